"""Layering is checked: `broker` never loads Textual or the console, and the console
uses nothing of the broker but the client, the summaries and the errors."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.broker_process import ROOT

ALLOWED_FROM_BROKER = {"broker.client", "broker.summary", "broker.errors", "broker.numbers"}


def test_broker_does_not_import_textual_or_console() -> None:
    code = (
        "import sys, broker, broker.cli, broker.http.app\n"
        "broker.cli.build_parser()\n"  # registers every command, `console` and `up` too
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'console'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == ""


def broker_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "broker" or name.startswith("broker.")}


def test_console_imports_only_the_client_summary_errors_and_numbers() -> None:
    files = sorted((ROOT / "console").rglob("*.py"))
    assert files
    wrong = {str(p.relative_to(ROOT)): sorted(broker_imports(p) - ALLOWED_FROM_BROKER)
             for p in files}
    assert {k: v for k, v in wrong.items() if v} == {}
