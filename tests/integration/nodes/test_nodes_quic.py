"""The QUIC binding over loopback (docs/PROTOCOL.md, section 8): real aioquic connections between an in-process
remote node and local node, a certificate made for the run.

- the same job sends the same session bytes over QUIC as over TCP (sizes per unit), delivered bit-exact;
- the edge's guards hold on the QUIC path: the shared secret (a wrong one is refused, the right one served),
  the memory budget (a unit over it is refused with memory_budget, the node goes on serving);
- the local node trusts only the certificate it was given."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from splitbed.nodes.errors import NodeError, RemoteError
from splitbed.nodes.jobs import parse_job
from splitbed.nodes.local import LocalConfig, LocalNode, ue_emulator
from splitbed.nodes.metrics import check_record
from splitbed.nodes.quic import make_certificate
from splitbed.nodes.remote import RemoteConfig, RemoteNode
from splitbed.nodes.runner import ModelRunner

WEIGHTS = "random:1"
MODEL = "mobilenet_v2"
SECRET = b"q" * 32


@pytest.fixture(scope="module")
def runner() -> ModelRunner:
    return ModelRunner(weights=WEIGHTS)


@pytest.fixture(scope="module")
def ue_runner() -> ModelRunner:
    """The local nodes' runner, as a LocalNode makes its own (device `host`), built once for the module."""
    return ModelRunner(weights=WEIGHTS, engine=LocalConfig.engine, device=ue_emulator(LocalConfig.device))


class Served:
    def __init__(self, runner: ModelRunner, ue_runner: ModelRunner, **options: Any) -> None:
        self.ue_runner = ue_runner
        self.node = RemoteNode(RemoteConfig(host="127.0.0.1", port=0, models=(MODEL,), weights=WEIGHTS,
                                            config_timeout_s=10, **options), runner=runner)
        self.node.prepare()
        self.host, self.port = self.node.bind()
        self.thread = threading.Thread(target=self.node.serve, daemon=True)
        self.thread.start()

    def local(self, **options: Any) -> LocalNode:
        cert = self.node.quic.cert_pem if self.node.quic is not None else None
        defaults: dict[str, Any] = {"transport": self.node.config.transport, "quic_ca_pem": cert,
                                    "verify_delivery": True, "config_timeout_s": 10, "result_timeout_s": 60}
        defaults.update(options)
        return LocalNode(LocalConfig(host=self.host, port=self.port, weights=WEIGHTS, **defaults),
                         runner=self.ue_runner)

    def stop(self) -> None:
        self.node.shutdown()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def served(runner: ModelRunner, ue_runner: ModelRunner, request: pytest.FixtureRequest) -> Iterator[Served]:
    server = Served(runner, ue_runner, **getattr(request, "param", {}))
    try:
        yield server
    finally:
        server.stop()


def _records(node: LocalNode, job: dict[str, Any]) -> list[dict[str, Any]]:
    import json

    return [r for r in node.run_job(parse_job(json.dumps(job))) if r.get("record_type") == "inference"]


JOBS = [{"partition": 3, "compression": "none", "repetitions": 2}, {"partition": 5, "compression": "zstd"},
        {"partition": 5, "encoding": "json-baseline"}]


def test_quic_carries_the_same_session_bytes_as_tcp(runner: ModelRunner, ue_runner: ModelRunner) -> None:
    sizes: dict[str, list[tuple[int, int, int]]] = {}
    records: list[dict[str, Any]] = []
    for transport in ("tcp", "quic"):
        server = Served(runner, ue_runner, transport=transport)
        try:
            with server.local() as node:
                records = [r for job in JOBS for r in _records(node, job)]
        finally:
            server.stop()
        for record in records:
            assert record["status"] == "ok", record["error"]
            check_record(record)
            assert record["delivery_check"]["match"] is True
            assert record["transport"]["binding"] == transport
        # uplink units are the same bytes; the RESULT's JSON holds timings, so its length varies run to run
        sizes[transport] = [(r["uplink_bytes"], r["aips_bytes"], r["serialized_intermediate_bytes"]) for r in records]
    assert sizes["quic"] == sizes["tcp"]
    quic_block = records[0]["transport"]
    assert quic_block["congestion_control"] == "reno" and quic_block["packets_sent"] > 0
    assert isinstance(quic_block["lost_packets"], int) and quic_block["udp_rcvbuf_bytes"] > 0


@pytest.mark.parametrize("served", [{"transport": "quic", "secret": SECRET}], indirect=True)
def test_the_shared_secret_holds_over_quic(served: Served) -> None:
    with served.local(secret=b"w" * 32) as node, pytest.raises((RemoteError, NodeError)) as refused:
        _records(node, JOBS[1])
    assert "auth" in str(refused.value)
    with served.local(secret=SECRET) as node:
        [record] = _records(node, JOBS[1])
    assert record["status"] == "ok", record["error"]


@pytest.mark.parametrize("served", [{"transport": "quic", "memory_budget_bytes": 1 << 20}], indirect=True)
def test_the_memory_budget_holds_over_quic(served: Served) -> None:
    with served.local() as node:
        big = _records(node, {"partition": 1, "compression": "none"})  # ~4.8 MB of float32: over 1 MiB
        assert [r["status"] for r in big] == ["error"]
        assert big[0]["error"]["code"] == "memory_budget", big[0]["error"]
        [small] = _records(node, {"partition": 5, "compression": "zstd"})  # the node goes on serving
    assert small["status"] == "ok", small["error"]
    assert served.node.state.budget.stats().in_use == 0


@pytest.mark.parametrize("served", [{"transport": "quic"}], indirect=True)
def test_the_local_node_trusts_only_the_given_certificate(served: Served) -> None:
    _, _, other = make_certificate("127.0.0.1")
    with served.local(quic_ca_pem=other, connect_timeout_s=5) as node, pytest.raises(NodeError) as refused:
        _records(node, JOBS[1])
    assert "QUIC" in str(refused.value)
