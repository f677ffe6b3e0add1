"""Loader: rules files from disk, with includes and file lookup tables.

The only rules module that does I/O: it hands the pure compiler a ``read`` function.
``load_rules`` compiles completely before returning, so a runtime reloading on SIGHUP
swaps Programs only on success. Loading again is cheap: when neither the main file
nor any include or table file changed (size, mtime, inode), the previous Program is
returned as is (include paths may name environment variables, ``$NC_RULES_HOME``: they
are read at each compile) (the same object, so ``new is old`` tells the runtime nothing changed).
"""

from __future__ import annotations

import os
from typing import Final

from probepair.errors import RulesCompileError
from probepair.rules.compiler import Program
from probepair.rules.compiler import compile_rules as _compile

_CACHE_SIZE: Final = 16
_cache: dict[str, tuple[tuple[tuple[str, int, int, int], ...], Program]] = {}


def read_text(path: str) -> str:
    """A rules, include or table file as text (UTF-8; undecodable bytes replaced)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def compile_rules(text: str, *, source: str = "<rules>", base_dir: str | None = None) -> Program:
    """Compile rules text; includes and table files resolve relative to ``base_dir``."""
    return _compile(text, source=source, base_dir=base_dir, read=read_text, env=os.environ)


def _stamp(path: str) -> tuple[str, int, int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, -1, -1)
    return (path, st.st_size, st.st_mtime_ns, st.st_ino)


def load_rules(path: str | os.PathLike[str]) -> Program:
    """Read, resolve and compile a rules file.

    Raises:
        RulesSyntaxError, RulesCompileError: located at ``file:line:col``; an unreadable
            main file is a RulesCompileError naming it.
    """
    name = os.fspath(path)
    cached = _cache.get(name)
    if cached is not None and all(_stamp(s[0]) == s for s in cached[0]):
        return cached[1]
    stamp = _stamp(name)
    try:
        text = read_text(name)
    except OSError as exc:
        raise RulesCompileError(
            name, 0, 0, f"cannot read rules file: {exc.strerror or exc}"
        ) from None
    program = _compile(
        text, source=name, base_dir=os.path.dirname(name) or ".", read=read_text, env=os.environ
    )
    stamps = (stamp, *(_stamp(p) for p in program.files))
    if len(_cache) >= _CACHE_SIZE:
        _cache.pop(next(iter(_cache)))
    _cache[name] = (stamps, program)
    return program
