"""The house rules a reviewer checks, as tests: one MPI package, small modules and functions,
policies and kernels free of the layers above them."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "mpicode"
MODULE_LINES, FUNCTION_LINES = 400, 60
# Functions allowed over the limit, each with its reason (kept short on purpose).
LONG_FUNCTIONS: dict[str, str] = {
    "engine/loop.py:iteration": "one iteration's steps in order, each charged to rank 0 (§2.6): "
                                "split, a reader would chase the order across functions",
}


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def test_only_the_mpi_package_imports_mpi4py():
    bad = [str(p.relative_to(PKG)) for p in _modules()
           if any(m == "mpi4py" or m.startswith("mpi4py.") for m in _imports(p))
           and p.parent.name != "mpi"]
    assert not bad, f"mpi4py imported outside mpicode/mpi/: {bad}"


@pytest.mark.parametrize("layer", ["schemes", "schedulers", "models", "engine"])
def test_policies_models_and_engine_do_not_reach_mpi(layer):
    bad = [str(p.relative_to(PKG)) for p in (PKG / layer).rglob("*.py")
           if any(m.startswith("mpicode.mpi") for m in _imports(p))]
    assert not bad, bad


def test_kernels_import_nothing_of_ours():
    for name in ("kernels.py",):
        mods = _imports(PKG / "numerics" / name)
        assert not [m for m in mods if m.startswith("mpicode")], mods


def test_modules_are_small():
    big = {str(p.relative_to(PKG)): n for p in _modules()
           if (n := p.read_text().count("\n")) > MODULE_LINES}
    assert not big, f"modules over {MODULE_LINES} lines: {big}"


def test_functions_are_small():
    long = {}
    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                key = f"{p.relative_to(PKG)}:{node.name}"
                if n > FUNCTION_LINES and key not in LONG_FUNCTIONS:
                    long[key] = n
    assert not long, f"functions over {FUNCTION_LINES} lines: {long}"


def test_the_scanner_is_not_vacuous(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("from mpi4py import MPI\nimport mpicode.mpi.comm\n")
    assert "mpi4py" in _imports(p) and "mpicode.mpi.comm" in _imports(p)
