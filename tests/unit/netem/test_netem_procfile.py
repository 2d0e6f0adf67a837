"""netem.procfile.KeptFile: a file kept open reads the kernel's current content each time, and fails soft."""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

import pytest

from netem.procfile import KeptFile


def _minor_faults(text: str | None) -> int:
    assert text is not None
    return int(text.rsplit(")", 1)[1].split()[7])  # /proc/self/stat field 10: minflt


def test_a_kept_proc_file_is_generated_afresh_on_every_read() -> None:
    kept = KeptFile("/proc/self/stat")
    before = _minor_faults(kept.read_text())
    # fresh anonymous pages kept off transparent huge pages: each first touch is a fault on any kernel (a bytearray
    # may reuse heap pages that are already resident, and THP "always" maps 2 MiB at a time)
    pages = mmap.mmap(-1, 64 * mmap.PAGESIZE)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        pages.madvise(mmap.MADV_NOHUGEPAGE)
    for index in range(0, len(pages), mmap.PAGESIZE):
        pages[index] = 1
    assert _minor_faults(kept.read_text()) >= before + 32
    pages.close()
    kept.close()
    assert kept.read_text() is None


def test_a_regular_file_reads_its_new_content_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "counter"
    path.write_text("1\n")
    kept = KeptFile(path)
    assert kept.read_text() == "1\n"
    path.write_text("22\n")  # same inode, rewritten in place
    assert kept.read_text() == "22\n"


def test_a_missing_or_unwritable_file_reads_and_writes_as_nothing(tmp_path: Path) -> None:
    missing = KeptFile(tmp_path / "absent")
    assert not missing.open and missing.read_text() is None and missing.write(b"5") is False
    assert KeptFile(None).read_bytes() is None
    reader = KeptFile(tmp_path)  # a directory opens read-only but cannot be read
    assert reader.read_bytes() is None


def test_clear_refs_resets_the_high_water_mark_through_a_kept_file() -> None:
    clear = KeptFile("/proc/self/clear_refs", write=True)
    status = KeptFile("/proc/self/status")
    if not clear.open:
        pytest.skip("no writable /proc/self/clear_refs here: the meter samples RSS instead (tests/unit/nodes)")

    def kb(field: str) -> int:
        text = status.read_text()
        assert text is not None
        match = re.search(rf"{field}:\s+(\d+) kB", text)
        assert match is not None
        return int(match.group(1))

    spike = bytearray(32 << 20)  # raises the high-water mark well above the resident size after it is freed
    spike[:: os.sysconf("SC_PAGE_SIZE")] = b"\1" * len(range(0, len(spike), os.sysconf("SC_PAGE_SIZE")))
    del spike
    assert kb("VmHWM") > kb("VmRSS") + 16 * 1024
    assert clear.write(b"5")
    assert kb("VmHWM") < kb("VmRSS") + 16 * 1024
