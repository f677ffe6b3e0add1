"""Loader (includes, tables, reload cache, digest) and the rules check/run tools."""

from __future__ import annotations

import io
import os
from pathlib import Path

import orjson
import pytest

from probepair.errors import RulesCompileError, RulesSyntaxError
from probepair.ops.rulestool import check_command, run_command
from probepair.rules import compile_rules, load_rules

from .conftest import Recorder


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_reload_returns_same_program_until_a_file_changes(tmp_path: Path) -> None:
    main = _write(tmp_path / "main.rules", 'include "inc/part.inc"\n@A = lookup("k", t)\n')
    part = _write(tmp_path / "inc/part.inc", 'table t = "t.lookup"\n')
    table = _write(tmp_path / "inc/t.lookup", "k\tv1\n")
    first = load_rules(main)
    assert load_rules(main) is first
    assert first.run({}, Recorder().ctx()) == {"A": "v1"}
    assert first.files == (str(part), str(table))
    table.write_text("k\tv2-longer\n")
    second = load_rules(main)
    assert second is not first
    assert second.digest != first.digest
    assert second.run({}, Recorder().ctx()) == {"A": "v2-longer"}


def test_digest_is_stable_for_the_same_text(tmp_path: Path) -> None:
    a = compile_rules("@A = 1", source="x.rules")
    b = compile_rules("@A = 1", source="x.rules")
    c = compile_rules("@A = 2", source="x.rules")
    assert a.digest == b.digest != c.digest
    assert len(a.digest) == 64


def test_compile_rules_resolves_includes_against_base_dir(tmp_path: Path) -> None:
    _write(tmp_path / "a.inc", '@From = "a.inc"\n')
    program = compile_rules('include "a.inc"', source="<text>", base_dir=str(tmp_path))
    assert program.run({}, Recorder().ctx()) == {"From": "a.inc"}


def test_unreadable_main_file_is_a_compile_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.rules"
    with pytest.raises(
        RulesCompileError, match=r"nope\.rules:0:0: cannot read rules file: No such"
    ):
        load_rules(missing)


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    main = _write(tmp_path / "m.rules", 'include "bad.inc"')
    _write(tmp_path / "bad.inc", "\n\n  @A = nosuch(1)\n")
    with pytest.raises(RulesCompileError) as info:
        load_rules(main)
    assert str(info.value) == f"{tmp_path / 'bad.inc'}:3:8: unknown function 'nosuch'"


def test_runtime_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    main = _write(tmp_path / "m.rules", '@A = 1\ninclude "calc.inc"\n@C = 3')
    _write(tmp_path / "calc.inc", "@B = $x / 0\n")
    rec = Recorder()
    assert load_rules(main).run({"x": "1"}, rec.ctx()) == {"A": 1, "C": 3}
    assert [str(e) for e in rec.errors] == [
        f"{tmp_path / 'calc.inc'}:1:1: division by zero ('1' / 0)"
    ]


def test_check_ok_and_error(tmp_path: Path) -> None:
    good = _write(tmp_path / "good.rules", 'table t = {{"a","b"}}\n@A = lookup($x, t)\n')
    out, err = io.StringIO(), io.StringIO()
    assert check_command(str(good), out, err) == 0
    assert out.getvalue() == (
        f"{good}: OK (2 statements, 1 tables, 0 includes, 0 targets)\n"
        f"  {good}: 2 statements, 1 tables, 0 includes\n"
    )
    bad = _write(tmp_path / "bad.rules", "@A = 1\nif (x {\n")
    out, err = io.StringIO(), io.StringIO()
    assert check_command(str(bad), out, err) == 1
    assert err.getvalue() == f"{bad}:2:7: expected ')' to close the 'if' condition, found '{{'\n"
    assert out.getvalue() == ""


def test_run_prints_one_json_object_per_alert(tmp_path: Path) -> None:
    rules = _write(
        tmp_path / "r.rules",
        'if (match($Token1, "skip")) { discard }\n@Summary = $Line\n@N = $Token2 / 1\n',
    )
    inp = io.BytesIO(b"keep 1\nskip this\n\nkeep x\r\n")
    out, err = io.BytesIO(), io.StringIO()
    assert run_command(str(rules), "line", inp, out, err, wall_clock=lambda: 5.0, hostname="h") == 0
    alerts = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert [(a["Summary"], a.get("N")) for a in alerts] == [("keep 1", 1), ("keep x", None)]
    assert all(len(a["EventKey"]) == 16 for a in alerts)
    assert err.getvalue() == f"{rules}:3:1: expected a number, found 'x' (record 4)\n"


def test_run_with_bad_rules_exits_2(tmp_path: Path) -> None:
    rules = _write(tmp_path / "r.rules", "@A = nosuch()")
    out, err = io.BytesIO(), io.StringIO()
    assert run_command(str(rules), "syslog", io.BytesIO(b"x\n"), out, err) == 2
    assert err.getvalue() == f"{rules}:1:6: unknown function 'nosuch'\n"
    assert out.getvalue() == b""


def test_run_unknown_format_exits_2(tmp_path: Path) -> None:
    rules = _write(tmp_path / "r.rules", "@A = 1")
    err = io.StringIO()
    assert run_command(str(rules), "xml", io.BytesIO(), io.BytesIO(), err) == 2
    assert "unknown format 'xml'" in err.getvalue()


def test_run_syslog_rules_end_to_end() -> None:
    rules = os.path.join(os.path.dirname(__file__), "..", "..", "rules", "syslog.rules")
    out = io.BytesIO()
    line = b"<11>Nov 22 04:05:04 app3 myapp[77]: payment gateway timeout\n"
    assert (
        run_command(
            rules,
            "syslog",
            io.BytesIO(line),
            out,
            io.StringIO(),
            props={"Manager": "probepair"},
            hostname="h",
        )
        == 0
    )
    alert = orjson.loads(out.getvalue())
    assert alert["Identifier"] == "app3 user myapp 1 Syslog probepair"
    assert alert["Severity"] == 4


def test_syntax_error_class(tmp_path: Path) -> None:
    with pytest.raises(RulesSyntaxError):
        load_rules(_write(tmp_path / "s.rules", "@A = ("))


def test_include_paths_name_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "home/include-snmptrap/vendor.include.rules", 'case "1.2":\n  @V = 1\n')
    main = _write(
        tmp_path / "probe/trap.rules",
        'switch ($enterprise) {\n  case "dummy case statement":\n'
        '  include "${NC_RULES_HOME}/include-snmptrap/vendor.include.rules"\n}\n',
    )
    monkeypatch.setenv("NC_RULES_HOME", str(tmp_path / "home"))
    assert load_rules(main).run({"enterprise": "1.2"}, Recorder().ctx()) == {"V": 1}
