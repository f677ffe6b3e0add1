"""The OMNIbus probe rules language: lexer -> parser -> compiler -> Program.

``compile_rules``/``load_rules`` are the entry points; both compile completely (all
includes, tables and regexes) before returning a Program, so errors surface at load
time with ``file:line:col``, never per event.
"""

from __future__ import annotations

from probepair.rules.compiler import OVER_BUDGET_FIELD, Program, RulesContext
from probepair.rules.loader import compile_rules, load_rules

__all__ = ["OVER_BUDGET_FIELD", "Program", "RulesContext", "compile_rules", "load_rules"]
