"""Hostile and broken input against a real remote node process: each bad connection gets a specific error reply
and is closed, while a well-behaved client on another connection keeps being served at the same time."""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from nodes_harness import RawClient, RemoteProcess

from splitbed.nodes import logsafe
from splitbed.nodes import protocol as proto
from splitbed.nodes.protocol import MsgType

PARTITION = 5  # mobilenet_v2 block_3_project_BN: one (1, 28, 28, 32) float32 tensor


def _good_client_meanwhile(remote: RemoteProcess, hostile: Callable[[], None]) -> None:
    """Run `hostile` while a good client runs inferences on its own connection; both must succeed."""
    results: list[tuple[MsgType, dict]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def good() -> None:
        try:
            with RawClient(remote.host, remote.port) as client:
                client.configure()
                arrays = client.tensors(PARTITION)
                while not stop.is_set() or not results:  # the first inference sends the AIPS, later ones reuse it
                    results.append(client.infer(PARTITION, arrays, aips_id=1, send_aips=not results))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    thread = threading.Thread(target=good)
    thread.start()
    try:
        hostile()
    finally:
        stop.set()
        thread.join(120)
    assert not errors, errors
    assert results and all(kind == MsgType.RESULT for kind, _ in results), results[:3]
    assert all(body["partition_id"] == PARTITION for _, body in results)


def _expect_error(client: RawClient, code: str, *, fatal: bool = True) -> dict:
    kind, body = client.read(15)
    assert kind == MsgType.ERROR, body
    assert body["code"] == code, body
    assert body["fatal"] is fatal and body["message"]
    if fatal:
        assert client.expect_closed(), "server kept a connection open after a fatal error"
    return body


def test_garbage_before_configuration(remote: RemoteProcess) -> None:
    def hostile() -> None:
        with RawClient(remote.host, remote.port) as client:
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # 'G' = type 0x47, length 0x4554202F: over the cap
            body = _expect_error(client, "unit_too_large")
            assert "1163141167" in body["message"]
    _good_client_meanwhile(remote, hostile)


def test_data_before_configuration_is_refused(remote: RemoteProcess) -> None:
    with RawClient(remote.host, remote.port) as client:
        client.send(proto.pack_header(2, 4) + b"abcd")
        body = _expect_error(client, "unexpected_message")
        assert "configuration stage" in body["message"]


def test_bad_control_json(remote: RemoteProcess) -> None:
    with RawClient(remote.host, remote.port) as client:
        client.send(proto.pack_header(MsgType.HELLO, 9) + b"{not json")
        _expect_error(client, "bad_control_message")


def test_unknown_model_and_protocol_version(remote: RemoteProcess) -> None:
    with RawClient(remote.host, remote.port) as client:
        client.send(proto.encode_control(MsgType.HELLO, {"protocol_version": 99}))
        _expect_error(client, "unsupported_protocol_version")
    with RawClient(remote.host, remote.port) as client:
        client.send(proto.encode_control(MsgType.HELLO, {"protocol_version": proto.PROTOCOL_VERSION}))
        assert client.read()[0] == MsgType.OFFER
        client.send(proto.encode_control(MsgType.SELECT, {"model": "alexnet", "encoding": "tlv"}))
        body = _expect_error(client, "unknown_model")
        assert "mobilenet_v2" in body["message"]


def test_oversize_length_after_configuration(remote: RemoteProcess) -> None:
    def hostile() -> None:
        with RawClient(remote.host, remote.port) as client:
            client.configure()
            client.send(struct.pack(">BI", 2, 0xFFFFFFF0))
            body = _expect_error(client, "unit_too_large")
            assert str(8 << 20) in body["message"]
    _good_client_meanwhile(remote, hostile)


def test_truncated_unit_then_close(remote: RemoteProcess) -> None:
    def hostile() -> None:
        with RawClient(remote.host, remote.port) as client:
            client.configure()
            client.send(struct.pack(">BI", 2, 5000) + bytes(1000))
        time.sleep(0.5)
    _good_client_meanwhile(remote, hostile)
    deadline = time.monotonic() + 10
    while "truncated unit discarded" not in remote.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "truncated unit discarded" in remote.log()


def test_slow_drip_hits_the_unit_deadline(remote: RemoteProcess) -> None:
    """Slowloris: one byte every 0.5 s never trips the 1.5 s read timeout, but the whole-unit deadline
    (2 s + length at 1 MB/s) closes the connection."""
    def hostile() -> None:
        with RawClient(remote.host, remote.port) as client:
            client.configure()
            client.send(struct.pack(">BI", 2, 1000))
            started = time.monotonic()
            with pytest.raises(OSError):
                for _ in range(40):
                    client.send(b"\0")
                    time.sleep(0.5)
                    client.sock.setblocking(False)
                    try:
                        data = client.sock.recv(65536, 2)  # MSG_PEEK: has the error reply arrived?
                    except BlockingIOError:
                        data = b""
                    finally:
                        client.sock.setblocking(True)
                    if data:
                        raise OSError("server replied")
            elapsed = time.monotonic() - started
            body = _expect_error(client, "timeout")
            assert "did not arrive within" in body["message"]
            assert 1.9 < elapsed < 8, elapsed
    _good_client_meanwhile(remote, hostile)


def test_silent_client_hits_the_configuration_deadline(remote: RemoteProcess) -> None:
    with RawClient(remote.host, remote.port, timeout=20) as client:
        started = time.monotonic()
        body = _expect_error(client, "timeout")
        assert "configuration stage" in body["message"]
        assert 5.5 < time.monotonic() - started < 15


def test_hostile_aips_is_answered_and_the_session_goes_on(remote: RemoteProcess) -> None:
    """A malformed AIPS (rank 255) is a recoverable format error: error reply, connection kept, next
    inference on the same connection works."""
    with RawClient(remote.host, remote.port) as client:
        client.configure()
        arrays = client.tensors(PARTITION)
        value = struct.pack(">BHHH", 1, 7, PARTITION, 1) + struct.pack(">HBB", 0, 1, 255)
        client.units += 1
        client.send(proto.pack_header(1, len(value)) + value)
        kind, body = client.read()
        assert kind == MsgType.ERROR and not body["fatal"], body
        assert body["code"] in ("rank_too_large", "malformed_aips"), body
        kind, body = client.infer(PARTITION, arrays, aips_id=8)
        assert kind == MsgType.RESULT, body


def test_data_without_aips_and_wrong_shape(remote: RemoteProcess) -> None:
    with RawClient(remote.host, remote.port) as client:
        client.configure()
        arrays = client.tensors(PARTITION)
        kind, body = client.infer(PARTITION, arrays, send_aips=False)
        assert kind == MsgType.ERROR and body["code"] == "no_active_aips" and not body["fatal"], body
        wrong = [np.zeros((1, 5, 5, 32), dtype=np.float32)]  # a valid AIPS, but not this partition's cut
        kind, body = client.infer(PARTITION, wrong, aips_id=2)
        assert kind == MsgType.ERROR and body["code"] == "tensor_mismatch" and not body["fatal"], body
        assert "28, 28, 32" in body["message"]
        kind, body = client.infer(PARTITION, arrays, aips_id=3)
        assert kind == MsgType.RESULT, body


def test_unknown_partition_is_a_clear_error(remote: RemoteProcess) -> None:
    with RawClient(remote.host, remote.port) as client:
        client.configure()
        client.units += 1
        client.send(proto.encode_control(MsgType.PREPARE, {"partition_id": 200}))
        kind, body = client.read()
        assert kind == MsgType.ERROR and body["code"] == "unknown_partition" and not body["fatal"]
        assert "no candidate partition 200" in body["message"]


def test_several_clients_at_once(remote: RemoteProcess) -> None:
    """Four sessions run inferences concurrently; every reply is correct for its own session (CRC-32 of the
    tensors each one sent) and the remote reports the overlap."""
    outcomes: dict[int, list[dict]] = {}
    errors: list[BaseException] = []

    def client_run(index: int) -> None:
        try:
            with RawClient(remote.host, remote.port) as client:
                client.configure(verify=True)
                arrays = client.tensors(PARTITION, seed=index)
                from splitbed.nodes.formatio import tensor_crc32

                expected = [tensor_crc32(a) for a in arrays]
                bodies = []
                for rep in range(4):
                    kind, body = client.infer(PARTITION, arrays, aips_id=1, send_aips=rep == 0)
                    assert kind == MsgType.RESULT, body
                    assert body["tensor_crc32"] == expected
                    bodies.append(body)
                outcomes[index] = bodies
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client_run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)
    assert not errors, errors
    assert sorted(outcomes) == [0, 1, 2, 3]
    assert max(b["concurrent_sessions"] for bodies in outcomes.values() for b in bodies) >= 2


def test_json_baseline_unit_is_refused_at_its_header(remote: RemoteProcess) -> None:
    """A JSON_BASELINE unit is refused from its 5-byte header when the session cannot use it: before the
    configuration stage (fatal, at once, while its payload has not even been sent), and on a tlv session (not
    fatal: its payload is counted off unread, the node's RSS does not grow by it, the session goes on)."""
    length = 6 << 20
    with RawClient(remote.host, remote.port) as client:
        client.send(proto.pack_header(MsgType.JSON_BASELINE, length))  # and nothing more
        body = _expect_error(client, "unexpected_message")
        assert "before the configuration stage" in body["message"]
    pid = remote.proc.pid
    with RawClient(remote.host, remote.port) as client:
        client.configure()
        arrays = client.tensors(PARTITION)
        status = Path(f"/proc/{pid}/status")
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        base = _kib(status, "VmRSS")
        client.units += 1
        client.send(proto.pack_header(MsgType.JSON_BASELINE, length), b"[" * length)
        kind, body = client.read(30)
        assert kind == MsgType.ERROR and body["code"] == "unexpected_message" and not body["fatal"], body
        assert body["after_unit"] == client.units
        grown = _kib(status, "VmHWM") - base
        assert grown < 3 << 10, f"node RSS grew by {grown} KiB while skipping a {length >> 20} MiB unit"
        kind, body = client.infer(PARTITION, arrays)
        assert kind == MsgType.RESULT, body


def _kib(status: Path, key: str) -> int:
    return next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith(key + ":"))


def test_a_session_id_cannot_forge_log_lines(remote: RemoteProcess) -> None:
    forged = "x\n2099-01-01 00:00:00,000 splitbed.nodes.remote CRITICAL forged by a client"
    with RawClient(remote.host, remote.port) as client:
        client.send(proto.encode_control(MsgType.HELLO, {"protocol_version": proto.PROTOCOL_VERSION}))
        kind, _ = client.read()
        assert kind == MsgType.OFFER
        client.send(proto.encode_control(MsgType.SELECT, {"model": "mobilenet_v2", "encoding": "tlv",
                                                           "session_id": forged}))
        kind, body = client.read()
        assert kind == MsgType.ACCEPT and body["session_id"] == logsafe.session_id(forged)
        assert "\n" not in body["session_id"] and len(body["session_id"]) == 64
    time.sleep(0.5)
    assert not [line for line in remote.log().splitlines() if line.startswith("2099-01-01")]
    assert "x_2099-01-01" in remote.log()


def test_the_offer_tells_no_host_details_and_accept_does(remote: RemoteProcess) -> None:
    """Host name, kernel, CPU and memory go only to a peer that completed the configuration stage."""
    with RawClient(remote.host, remote.port) as client:
        offer = client.configure()
        text = json.dumps(offer)
        host = socket.gethostname()
        assert "server" not in offer and "kernel" not in text and "cpu_model" not in text
        assert host not in text
        client.send(proto.encode_control(MsgType.CLOCK_PING, {"t1": 1}))  # still configured and served
        kind, _ = client.read()
        assert kind == MsgType.CLOCK_PONG
    with RawClient(remote.host, remote.port) as client:
        client.send(proto.encode_control(MsgType.HELLO, {"protocol_version": proto.PROTOCOL_VERSION}))
        client.read()
        client.send(proto.encode_control(MsgType.SELECT, {"model": "mobilenet_v2", "encoding": "tlv"}))
        kind, accept = client.read()
        assert kind == MsgType.ACCEPT and accept["server"]["host"]["hostname"] == host
        assert {"cpu_model", "kernel", "memory_total_bytes"} <= set(accept["server"]["host"])


def test_the_offered_camera_pseudo_partition_is_the_one_the_edge_takes(remote: RemoteProcess) -> None:
    """The OFFER lists the model's candidates and then `camera` (id 255); PREPARE of the offered id builds the
    whole-model tail for the uint8 image, and a JPEG of it (jpeg-q90, as the sweep's baseline sends) is answered."""
    with RawClient(remote.host, remote.port) as client:
        offer = client.configure()
        [model] = offer["models"]
        camera = model["partitions"][-1]
        assert camera == {"partition_id": 255, "name": "camera", "tensors": 1}
        assert len({p["partition_id"] for p in model["partitions"]}) == len(model["partitions"])
        [cut] = client.prepare(camera["partition_id"])
        assert cut["dtype"] == "uint8" and cut["shape"] == model["input_shape"]
        image = np.random.default_rng(1).integers(0, 256, (1, *cut["shape"]), dtype=np.uint8)
        kind, body = client.infer(camera["partition_id"], [image], profile="jpeg-q90")
        assert kind == MsgType.RESULT and body["partition_id"] == 255, body


def test_a_batch_beyond_max_batch_is_refused_before_the_tail_runs(remote: RemoteProcess) -> None:
    """The decoded-size cap would let a unit carry hundreds of samples, and the tail's activations grow with
    each: a batch is refused above --max-batch (1), with the reason, and the session goes on."""
    with RawClient(remote.host, remote.port) as client:
        client.configure()
        offer_arrays = client.tensors(PARTITION)
        batch = [np.concatenate([offer_arrays[0]] * 64)]
        kind, body = client.infer(PARTITION, batch, aips_id=1)
        assert kind == MsgType.ERROR and body["code"] == "tensor_mismatch" and not body["fatal"], body
        assert "batch of 64 samples" in body["message"] and "--max-batch" in body["message"]
        kind, body = client.infer(PARTITION, offer_arrays, aips_id=2)
        assert kind == MsgType.RESULT, body
