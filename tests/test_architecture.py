"""The import rules of docs/ARCHITECTURE.md ("Floors and their import rules").

The foundations (estimator, experiments, results) may import no floor but their own, so they import
nothing of each other; plotting may import only results; nothing below pipeline imports pipeline or cli.
"""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mftma"

#: Modules that every floor may import: they import nothing of mftma but each other.
COMMON = {"mftma", "mftma.errors", "mftma.atomic", "mftma.names", "mftma.devices", "mftma.run_lock",
          "mftma.progress", "mftma.lazy"}

#: floor -> the floors it may import (besides itself and COMMON).
MAY_IMPORT = {
    "estimator": set(),
    "experiments": set(),
    "results": set(),
    "cache": {"experiments", "estimator"},
    "probes": set(),
    "plotting": {"results"},
    "pipeline": {"estimator", "experiments", "results", "cache", "probes", "plotting"},
    "cli": {"estimator", "experiments", "results", "cache", "probes", "plotting", "pipeline"},
    "__main__": {"cli"},  # python -m mftma
}
#: Top-level modules kept for old notebooks: they re-export the estimator.
SHIMS = {"manifold_analysis_correlation", "alldata_dimension_analysis"}


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _mftma_imports(path: Path):
    """``(line, module)`` of every import of an mftma module in ``path``, function-level ones included."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "mftma")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module.split(".")[0] == "mftma":
            # `from mftma import x` may import the submodule mftma.x
            names = ([f"mftma.{alias.name}" if not alias.name.startswith("__") else "mftma" for alias in node.names]
                     if node.module == "mftma" else [node.module])  # dunder names are attributes of mftma
            yield from ((node.lineno, name) for name in names)


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        yield path, ".".join(part for part in relative.parts if part != "__init__")


def test_the_import_checker_sees_function_level_imports(tmp_path):
    source = tmp_path / "example.py"
    source.write_text("def f():\n    from mftma.pipeline.rollback import rollback\n\nfrom mftma import names\n")
    assert sorted(_mftma_imports(source)) == [(2, "mftma.pipeline.rollback"), (4, "mftma.names")]


def test_every_floor_imports_only_what_its_rule_allows():
    broken = []
    for path, module in _modules():
        floor = _floor(module)
        if module in COMMON or floor in SHIMS:
            allowed = {"estimator"} if floor in SHIMS else set()
        else:
            assert floor in MAY_IMPORT, f"{module} is in no floor of docs/ARCHITECTURE.md"
            allowed = MAY_IMPORT[floor] | {floor}
        for line, imported in _mftma_imports(path):
            if imported not in COMMON and _floor(imported) not in allowed:
                broken.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert not broken, "imports that break docs/ARCHITECTURE.md's rules:\n" + "\n".join(broken)


@pytest.mark.parametrize("module", ["mftma", "mftma.estimator.analysis", "mftma.estimator.diagnostics",
                                    "mftma.cache.reader", "mftma.results", "mftma.plotting",
                                    "mftma.pipeline.manifold_sources"])
def test_importing_does_not_load_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", f"importing {module} imports torch"
