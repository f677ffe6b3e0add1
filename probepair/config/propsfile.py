"""Reading props files: the YAML boundary (``props`` itself stays pure)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from probepair.config.props import SECRET_NAMES
from probepair.errors import ConfigError

# A line setting a secret: an error quotes its name, never its value.
_SECRET_LINE = re.compile(r"\s*(" + "|".join(SECRET_NAMES) + r")\b", re.IGNORECASE)


def _parse_omnibus_line(line: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"\s*([A-Za-z_][\w.]*)\s*:\s*(.*?)\s*", line)
    if m is None:
        return None
    value = m[2]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    return m[1], value


def read_props_file(path: str) -> dict[str, object]:
    """The raw ``Name -> value`` mapping of a props file.

    YAML first; a file YAML rejects (OMNIbus values such as ``'C:\\x'`` in double
    quotes) is read line by line as ``Name : value`` with ``#`` comments.

    Raises:
        ConfigError: unreadable file, or a line that is neither form.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, None, f"cannot read props file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, None, "props file is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        data = {}
        for lineno, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            parsed = _parse_omnibus_line(re.sub(r"\s+#.*$", "", stripped))
            if parsed is None:
                mark = getattr(exc, "problem_mark", None)
                where = f"line {mark.line + 1}" if mark is not None else f"line {lineno}"
                secret = _SECRET_LINE.match(stripped)
                # Never the line itself: --props pointed at the wrong file (the secret's,
                # a key's) must not print what that file holds.
                got = (f"{secret[1]!r} and a value not shown" if secret else
                       f"a line of {len(stripped)} characters without ':' (not shown)")
                raise ConfigError(
                    path, None, f"{where}: expected 'Name: value', got {got}"
                ) from None
            data[parsed[0]] = parsed[1]
    if data is None:
        return {}
    if not isinstance(data, dict):
        # Not the value itself: a props path that names the SharedSecretFile (one line of
        # hex, a YAML string) must not print the secret in the error.
        raise ConfigError(
            path, None, f"expected a mapping of Name: value, got a {type(data).__name__} "
            "(not shown: is this the props file, or a secret's?)"
        )
    return {str(k): v for k, v in data.items()}
