"""The flow between folders holds: the import contracts of pyproject.toml (import-linter) pass.

Each contract names a folder and what it must not import (README, Layout): `customers/` imports
nothing of ours, nothing imports `ops/`, the intake, the worker, the projection and the API
import only what lies downstream of them, the API reaches the read model through
`projections.queries` alone, and nothing but the tests imports `tests/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True, no_logo=True))")


def test_no_folder_imports_against_the_flow():
    run = subprocess.run([sys.executable, "-c", LINT], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_package_of_the_tree_is_placed_in_the_flow():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert packages == set(config["root_packages"])
