"""Total JSON decoding for bytes that came from a socket (control socket, ``/status``).

``loads`` parses or raises ``JSONInputError``, never anything else: orjson's parser is
iterative in C (no Python recursion, no ``RecursionError`` on ``[[[[...``; it stops at
1,024 levels by itself), and the result is then walked with an explicit stack to hold
it to ``max_depth`` levels, so no later recursive walk (``json.dumps``, a comparison)
can overflow the Python stack either. The size is checked before any parsing.
"""

from __future__ import annotations

from typing import Final

import orjson

MAX_DEPTH: Final = 32  # levels: a probe's status is 3 deep; far below Python's 1,000 frames


class JSONInputError(ValueError):
    """The bytes are not acceptable JSON; ``reason`` says why (for logs and errors)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def loads(data: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> object:
    """Parse ``data`` as JSON, bounded in size and nesting.

    Raises:
        JSONInputError: more than ``max_bytes`` bytes, not UTF-8 JSON, or nested deeper
            than ``max_depth`` arrays/objects.
    """
    if len(data) > max_bytes:
        raise JSONInputError(f"{len(data)} bytes, more than the {max_bytes} accepted")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JSONInputError(f"not JSON: {exc}") from None
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise JSONInputError(f"nested deeper than {max_depth} levels")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value
