"""The layers and dependencies are checked here, so `make test` (and CI) covers them.

``lint-imports`` checks the contracts in pyproject.toml ([tool.importlinter]): app and worker import
clearcut, never the reverse; the pipeline and the models know nothing of jobs, storage or SQL; the API
never imports ONNX Runtime itself; no import cycles. ``deptry`` checks that every third-party import is
a declared dependency and every declared runtime dependency is imported ([tool.deptry]).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / tool), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_import_contracts_are_kept():
    result = _run("lint-imports", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_declared_dependencies_match_the_imports():
    result = _run("deptry", ".")
    assert result.returncode == 0, result.stdout + result.stderr
