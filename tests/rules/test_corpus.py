"""Corpus tests (tomli-style): valid files with expected alerts, invalid files with
the exact expected error line.

valid/NAME.rules runs every case of valid/NAME.json: ``tokens`` (and optional
``props``) in, expected ``alert`` (null: discarded), ``generated`` alerts (genevent),
``assigned`` properties, runtime ``errors`` and ``logs`` out; cases run in order on one Program, so arrays
persist between them as they do between events. invalid/NAME.rules must fail with
the one line in invalid/NAME.err. Paths are relative to the corpus directory.

Set RULES_CORPUS_REGEN=1 to rewrite the JSON expectations (then review the diff).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from probepair.errors import RulesError
from probepair.rules import load_rules

from .conftest import Recorder

CORPUS = Path(__file__).parent / "corpus"
VALID = sorted(p.stem for p in (CORPUS / "valid").glob("*.rules"))
INVALID = sorted(p.stem for p in (CORPUS / "invalid").glob("*.rules"))


@pytest.fixture(autouse=True)
def _in_corpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In the corpus directory, with local time UTC (dates read and write local time)."""
    monkeypatch.chdir(CORPUS)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("name", VALID)
def test_valid(name: str) -> None:
    program = load_rules(f"valid/{name}.rules")
    spec_path = Path(f"valid/{name}.json")
    cases = json.loads(spec_path.read_text())
    for case in cases:
        rec = Recorder()
        ctx = rec.ctx(case.get("props"))
        alert = program.run(case["tokens"], ctx)
        got = {
            "alert": alert,
            "generated": ctx.generated,
            "assigned": ctx.assigned,
            "errors": [str(e) for e in rec.errors],
            "logs": [list(x) for x in rec.logs],
        }
        if os.environ.get("RULES_CORPUS_REGEN"):
            case.update(got)
            if not got["generated"]:
                del case["generated"]
            continue
        want = {
            "alert": case["alert"],
            "generated": case.get("generated", []),
            "assigned": case.get("assigned", {}),
            "errors": case.get("errors", []),
            "logs": case.get("logs", []),
        }
        assert json.loads(json.dumps(got)) == want, case["tokens"]
    if os.environ.get("RULES_CORPUS_REGEN"):
        spec_path.write_text(json.dumps(cases, indent=1, ensure_ascii=False) + "\n")


@pytest.mark.parametrize("name", INVALID)
def test_invalid(name: str) -> None:
    expected = Path(f"invalid/{name}.err").read_text().strip()
    with pytest.raises(RulesError) as info:
        load_rules(f"invalid/{name}.rules")
    assert str(info.value) == expected
