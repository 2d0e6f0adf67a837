"""Log lines that a peer cannot forge: the nodes log what peers send (session ids, error messages, model names),
and a newline in any of it would start a line of the peer's choosing (a forged CRITICAL entry), an escape
sequence would drive the reader's terminal. So every message is escaped to one printable line here, and the
session id a client proposes is reduced to a safe alphabet before it is used at all."""

from __future__ import annotations

import logging
import re

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SESSION_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:-]")
MAX_SESSION_ID = 64


def escape(text: str) -> str:
    """`text` with control characters (newlines, escapes, C1, line separators) as \\n, \\x1b, \\u2028, ..."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def session_id(raw: object) -> str:
    """A client-proposed session id as the node uses it: letters, digits and . _ : - only (others become _),
    at most MAX_SESSION_ID characters; empty when nothing usable was given."""
    return _SESSION_ID_UNSAFE.sub("_", str(raw))[:MAX_SESSION_ID] if raw else ""


class SafeFormatter(logging.Formatter):
    """A Formatter whose message part is always one line of printable text (tracebacks, added after it by
    logging for exc_info, stay as they are: they come from our code)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = escape(record.message)
        return super().formatMessage(record)
