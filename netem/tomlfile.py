"""TOML parsing for every file a user hands us (link profiles, scenarios, suite matrices, and what comes next):
one clear line for whatever is wrong, never a traceback.

tomllib parses nested arrays and inline tables by recursion, so a 1 KB file nested 500 deep raised a
RecursionError whose traceback ran to ~1,100 lines; and a file nested just below Python's limit parses, then
makes any recursive consumer (json.dumps of a description, a validator) fail later. So nesting is bounded here,
in the one helper the loaders share: the parse's own RecursionError becomes a TomlError, and the parsed document
is walked (iteratively) and refused beyond MAX_NESTING levels, far more than any real file of ours uses.
"""

from __future__ import annotations

import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

#: Deepest nesting of tables and arrays accepted (a profile uses 3; a scenario 4).
MAX_NESTING = 32


class TomlError(ValueError):
    """A TOML text that cannot be used; the message is one line, meant to follow the file's name."""


def loads(text: str | bytes) -> dict[str, Any]:
    """The document of a TOML text (bytes must be UTF-8); TomlError when it is not UTF-8, not TOML, or nested
    deeper than MAX_NESTING."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TomlError(f"not UTF-8 text: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlError(f"not valid TOML: {exc}") from None
    except RecursionError:
        raise TomlError(f"not usable: arrays or tables nested too deeply (at most {MAX_NESTING} levels)") from None
    check_nesting(document)
    return document


def check_nesting(document: Any, limit: int = MAX_NESTING) -> None:
    """TomlError if lists/dicts in `document` nest deeper than `limit` (an iterative walk: no recursion)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise TomlError(f"not usable: arrays or tables nested more than {limit} levels deep")
        if isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values() if isinstance(item, (dict, list)))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value if isinstance(item, (dict, list)))
