"""A peer's text cannot forge or break log lines (splitbed.nodes.logsafe)."""

from __future__ import annotations

import io
import logging

from splitbed.nodes import logsafe


def test_escape_keeps_one_printable_line() -> None:
    forged = "abc\n2099-01-01 00:00:00 splitbed CRITICAL forged\r\x1b[31mred\x85\u2028end"
    out = logsafe.escape(forged)
    assert "\n" not in out and "\r" not in out and "\x1b" not in out and "\u2028" not in out and "\x85" not in out
    assert out.startswith("abc\\n2099") and "\\x1b[31mred" in out and out.endswith("\\u2028end")
    assert logsafe.escape("plain text: ok") == "plain text: ok"


def test_session_id_is_reduced_to_a_safe_alphabet() -> None:
    assert logsafe.session_id("a1b2-C3_d.e:f") == "a1b2-C3_d.e:f"
    assert logsafe.session_id("x\nCRITICAL forged") == "x_CRITICAL_forged"
    assert logsafe.session_id("z" * 200) == "z" * logsafe.MAX_SESSION_ID
    assert logsafe.session_id(None) == "" and logsafe.session_id("") == ""


def test_formatter_escapes_messages_and_arguments_but_keeps_tracebacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logsafe.SafeFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test.logsafe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("session %s: %s", "id\nCRITICAL forged", "msg\r\n")
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed for %s", "peer\n")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "WARNING session id\\nCRITICAL forged: msg\\r\\n"
    assert lines[1] == "ERROR failed for peer\\n" and lines[2].startswith("Traceback")
    assert not any(line.startswith("CRITICAL") for line in lines)
