"""Job lines of the driven mode: accepted as documented, refused with a specific message otherwise."""

from __future__ import annotations

import json

import pytest

from splitbed.nodes.errors import ConfigurationError
from splitbed.nodes.jobs import MAX_JOB_LINE_BYTES, Job, parse_job


def test_defaults_and_full_job() -> None:
    assert parse_job("{}") == Job()
    job = parse_job(json.dumps({"model": "vgg16", "partition": "block3_pool", "image": "cat.jpg",
                                "encoding": "json-baseline", "compression": "zstd", "repetitions": 3,
                                "tags": {"k": 1}, "aips": "resend-new-id", "result_mode": "topk", "top_k": 3,
                                "link": {"profile": "lte"}, "job_id": "x"}))
    assert (job.model, job.partition, job.repetitions, job.tags, job.link) == \
        ("vgg16", "block3_pool", 3, {"k": 1}, {"profile": "lte"})


@pytest.mark.parametrize(("line", "fragment"), [
    ("not json", "not valid JSON"),
    ("[1]", "must be a JSON object"),
    ('{"modle": "vgg16"}', "unknown job fields ['modle']"),
    ('{"encoding": "xml"}', "job encoding is 'xml'"),
    ('{"action": "explode"}', "job action is 'explode'"),
    ('{"aips": "sometimes"}', "job aips policy"),
    ('{"repetitions": 0}', "repetitions = 0 is outside [1,"),
    ('{"repetitions": true}', "repetitions must be an integer"),
    ('{"top_k": 1001}', "top_k"),
    ('{"tags": [1]}', "tags must be a JSON object"),
    ('{"partition": 1.5}', "partition must be"),
    ('{"image": ""}', "image must be a non-empty string"),
    ('{"link": "lte"}', "link must be a JSON object"),
])
def test_bad_jobs_are_refused_specifically(line: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=".*") as info:
        parse_job(line)
    assert fragment in str(info.value)


def test_job_line_is_capped() -> None:
    with pytest.raises(ConfigurationError, match="exceeds"):
        parse_job('{"tags": {"x": "' + "a" * MAX_JOB_LINE_BYTES + '"}}')
