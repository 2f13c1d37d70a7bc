"""The only private Dagster names the package uses all live in ranking_pipeline/dagster_internals.py: an
upgrade that moves one fails here, naming it, instead of deep inside a run."""

import ast
import importlib
from pathlib import Path

import dagster

PACKAGE = Path(__file__).resolve().parents[1] / "ranking_pipeline"
INTERNALS = PACKAGE / "dagster_internals.py"


def _private_imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dagster._")
        for alias in node.names
    ]


def test_every_private_name_still_exists_in_the_pinned_dagster():
    names = _private_imports(INTERNALS)
    assert names, "dagster_internals.py imports nothing"
    for module, name in names:
        assert hasattr(importlib.import_module(module), name), (
            f"dagster {dagster.__version__}: {module}.{name} is gone; find its public replacement"
        )


def test_no_other_module_of_the_package_imports_a_private_dagster_module():
    offenders = [
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in PACKAGE.rglob("*.py")
        if path != INTERNALS
        for module, _ in _private_imports(path)
    ]
    assert offenders == []
