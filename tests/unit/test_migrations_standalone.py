"""Migrations state their own DDL: a revision imports only the standard library, Alembic and
SQLAlchemy, never the service's packages, whose tables and helpers change after it is written
(an old revision would then mean something new)."""

import ast
import sys

from testing.harness import ROOT

VERSIONS = ROOT / "migrations" / "versions"
ALLOWED = {"alembic", "sqlalchemy"} | set(sys.stdlib_module_names)


def imported(path) -> set[str]:
    """Top-level names of every module the file imports, wherever the import statement is."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in {
                "import_module", "__import__"}:
            names.add("<dynamic import>")
    return names


def project_packages() -> set[str]:
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}


def test_every_revision_is_looked_at():
    revisions = sorted(p.name[:4] for p in VERSIONS.glob("*.py"))
    assert revisions[:8] == [f"{i:04d}" for i in range(1, 9)]
    assert {"projections", "customers", "streams", "api", "webhooks"} <= project_packages()


def test_no_revision_imports_the_service():
    imports = {p.name: imported(p) for p in sorted(VERSIONS.glob("*.py"))}
    assert {name: sorted(names & project_packages()) for name, names in imports.items()
            if names & project_packages()} == {}
    assert {name: sorted(names - ALLOWED) for name, names in imports.items() if names - ALLOWED} == {}
