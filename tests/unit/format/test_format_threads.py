"""Decoders and encoders used from many threads at once, as the remote node does (one session per thread).

python-zstandard contexts shared between threads corrupted data and crashed the process (SIGSEGV); every
profile is decoded here from 8 threads at once and compared bit for bit with a single-threaded decode. The
work runs in a child process so that a crash fails this test instead of killing pytest.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import sys, threading
    import numpy as np
    from splitbed.format import PROFILES, Aips, Decoder, encode_aips, encode_data_bytes
    from splitbed.format.events import FormatErrorEvent, TensorsDecoded

    THREADS, ROUNDS = 8, 40
    rng = np.random.default_rng(7)
    # Smooth, compressible tensors of a realistic activation size, two per unit.
    arrays = [np.cumsum(rng.standard_normal((1, 28, 28, 32)), axis=2).astype(np.float32),
              rng.standard_normal((1, 14, 14, 64)).astype(np.float32)]
    streams, expected = {}, {}
    tensor_profiles = [p for p in PROFILES.values() if p.coder.lossless]  # not the JPEG (image) profiles
    for profile in tensor_profiles:
        aips = Aips.for_arrays(1, 3, arrays, profile.profile_id)
        streams[profile.name] = encode_aips(aips) + encode_data_bytes(aips, arrays)
        dec = Decoder()
        dec.feed(streams[profile.name])
        [decoded] = [e for e in dec.events() if isinstance(e, TensorsDecoded)]
        expected[profile.name] = [t.tobytes() for t in decoded.tensors]
    failures, encoded_wrong = [], []
    barrier = threading.Barrier(THREADS)

    def work(index):
        names = list(streams)
        dec = Decoder()
        barrier.wait()
        for round_ in range(ROUNDS):
            name = names[(index + round_) % len(names)]
            dec.feed(streams[name])
            for event in dec.events():
                if isinstance(event, FormatErrorEvent):
                    failures.append(f"{name}: {event.code.value} {event.message}")
                elif isinstance(event, TensorsDecoded):
                    if [t.tobytes() for t in event.tensors] != expected[name]:
                        failures.append(f"{name}: tensors differ from the single-threaded decode")
            # Encoding (compressing) from every thread at once must give the same bytes too.
            aips = Aips.for_arrays(1, 3, arrays, tensor_profiles[(index + round_) % len(tensor_profiles)].profile_id)
            profile_name = PROFILES[aips.tensors[0].compression_profile_id].name
            if encode_aips(aips) + encode_data_bytes(aips, arrays) != streams[profile_name]:
                encoded_wrong.append(profile_name)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(len(failures), len(encoded_wrong), failures[:3], encoded_wrong[:3])
    sys.exit(1 if failures or encoded_wrong else 0)
""")


def test_every_profile_decodes_bit_exact_from_8_threads_at_once() -> None:
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (f"exit {proc.returncode} (139/-11: the process crashed)\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    assert proc.stdout.split()[:2] == ["0", "0"], proc.stdout
