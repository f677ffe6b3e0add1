"""``rules check`` warns where feed text can reach a %Mode assignment, naming the line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from probepair.ops.rulestool import check_command
from probepair.rules.parser import parse, parse_fragment
from probepair.rules.trust import untrusted_mode_assignments

SHIPPED = Path(__file__).resolve().parents[2] / "rules"


def _lines(text: str) -> list[int]:
    return [span.line for span in untrusted_mode_assignments(parse(text))]


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ('%Mode = "master"\n', [1]),  # every event
        ('if (match($Message, "x")) {\n  %Mode = "master"\n}\n', [2]),
        ('if (match(%FeedType, "file")) {\n  %Mode = "master"\n}\n', []),
        ('if (%FeedType == "file" && match($Message, "x")) {\n  %Mode = "slave"\n}\n', []),
        ('if ("file" == %FeedType) {\n  %Mode = "slave"\n}\n', []),
        ('if (match(%FeedType, "udp")) {\n  %Mode = "master"\n}\n', [2]),
        ('if (match(%FeedType, "file") || match($Message, "x")) {\n  %Mode = "master"\n}\n',
         [2]),
        ('if (match(%FeedType, "file")) {\n  $a = 1\n} else {\n  %Mode = "master"\n}\n', [4]),
        ('if (match(%FeedType, "file")) {\n  if (match($M, "x")) {\n    %Mode = "master"\n'
         '  }\n}\n', []),
        ('switch (%FeedType) {\ncase "file":\n  %Mode = "master"\ndefault:\n'
         '  %Mode = "slave"\n}\n', [5]),
        ('switch ($Message) {\ncase "take over":\n  %Mode = "master"\ndefault:\n}\n', [3]),
        ('foreach (e in $*) {\n  %Mode = "master"\n}\n', [2]),
        ('@Mode = "master"\n$Mode = "x"\n', []),  # a field and a token, not the property
    ],
)
def test_untrusted_mode_assignments(text: str, lines: list[int]) -> None:
    assert _lines(text) == lines


def test_files_of_cases_are_walked() -> None:
    module = parse_fragment('$a = 1\ncase "x":\n  %Mode = "master"\n')
    assert [s.line for s in untrusted_mode_assignments(module)] == [3]


def test_rules_check_names_the_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "switch.rules"
    rules.write_text('if (regmatch($Message, "^take over$")) {\n    %Mode = "master"\n}\n')
    out, err = io.StringIO(), io.StringIO()
    assert check_command(str(rules), out, err) == 0
    assert err.getvalue().splitlines() == [
        f"{rules}:2:5: warning: %Mode is assigned where the feed's text decides: anyone who "
        "can send one line to the feed can switch the pair's roles; guard it with "
        "'if (match(%FeedType, \"file\"))' (a local file feed) or use probepair "
        "takeover/release"
    ]


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED.glob("*.rules")))
def test_shipped_rules_draw_no_warning(name: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert check_command(str(SHIPPED / name), out, err) == 0
    assert err.getvalue() == ""
