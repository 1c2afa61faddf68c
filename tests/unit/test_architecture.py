"""The layer rules of docs/design.md §1.2, as tests: read from the AST of every module.

* only ``mpicode/mpi/`` imports mpi4py; ``numerics/kernels.py`` imports nothing of mpicode;
* the leaf layer imports only itself; policies (``schemes/``, ``schedulers/``, ``models/``)
  import only the leaf layer, the registry, numerics and their own package; ``models/``
  reads no file (no ``io/``, no h5py);
* no import cycle at module level anywhere in ``mpicode/`` (the failure shows the circle);
* an import of mpicode inside a function says why it is there (``# lazy: REASON``);
* size follows cohesion: a module over 400 lines or a function over 60 is listed below with
  the reason it is one concept;
* the research suite (``studies/``, beside the package) uses mpicode as a user would: the
  product imports nothing of it (the old names in ``mpicode/experiments/`` find it by name,
  only when asked), it imports only public names of mpicode, and it has no import cycle;
* one assembly (docs/design.md §2.1): the event loop and the run loop are built in
  ``engine/assembly.py`` only, and no part of a run is wired by assigning another to its
  attributes afterwards (collaborators are handed in at construction; hooks, not patches).
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "mpicode"
STUDIES = PKG.parent / "studies"
# the one place of the product that names studies (by string, when an old name is asked for)
SHIMS = "mpicode.experiments"
DYNAMIC_IMPORTS = ("import_module", "run_module", "find_spec", "__import__")

# the leaf layer (docs/design.md §1.2): imports nothing of mpicode but itself
LEAF = {"mpicode.errors", "mpicode.options", "mpicode.core_options", "mpicode.profile",
        "mpicode.stats", "mpicode.memory", "mpicode.wire", "mpicode.launcher"}
POLICIES = ("schemes", "schedulers", "models")
# Leaf modules that still reach above the leaf, each with the issue that ends it.
LEAF_EXCEPTIONS: dict[str, str] = {}

# Long modules and functions, each with the reason it stays one piece (cohesion, not lines).
MODULE_LINES, FUNCTION_LINES = 400, 60
LONG_MODULES: dict[str, str] = {
    "analysis/plots.py": "every --plots figure and its shared styling (plots_more merged in)",
    "analysis/runs.py": "run logs as tables: reading, the summary row and its columns (mode)",
    "io/runlog.py": "the run log writer: layout, blocks, the disk-full rules, checkpoints, close",
    "io/traces.py": "the trace format: CSV/Parquet tables, sampled and gappy rows (renumber, "
                    "fill), bounds, the file and its command",
    "registry.py": "one concept: the four plugin kinds, their loading (built-ins, entry "
                   "points on demand), origins, option merging and listing",
    "testing.py": "one concept: check_scheme's simulated trials (with failures for the "
                  "schemes that survive them, §2.7) and the plugin kinds' conformance checks",
    "schemes/two_stage.py": "one concept: two-stage's options, stage-1 plan, events and "
                            "coverage-map decode; each collaborator is its own module "
                            "(coverage, stage2, stealing, replanning, regroup: its recovery "
                            "from a dead worker, §2.7)",
    "schemes/base.py": "one concept: the Scheme contract every driver calls, task "
                       "bookkeeping, speed estimates and the membership API (on_failure, "
                       "set_members, reissue; docs/design.md §2.7); the slots' bookkeeping "
                       "is its own module (schemes/slots.py)",
}
LONG_FUNCTIONS: dict[str, str] = {
    "engine/loop.py:iteration": "one iteration's steps in order, each charged to rank 0 (§2.6): "
                                "split, a reader would chase the order across functions",
    "engine/events.py:run": "the event loop's one dispatch over its sources (issue 23: the "
                            "lead reworks it in this phase)",
}

# Function-level imports without a '# lazy:' reason, each with the issue that removes them.
UNREASONED_LAZY: dict[str, str] = {
}


def _modules(pkg: Path = PKG) -> dict[str, Path]:
    """``mpicode.x.y`` -> path, every module of the package (``pkg``: another one)."""
    out = {}
    for p in sorted(pkg.rglob("*.py")):
        if "__pycache__" in p.parts:
            continue
        parts = list(p.relative_to(pkg.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = p
    return out


MODULES = _modules()
STUDY_MODULES = _modules(STUDIES)


def _is_type_checking(node) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, name: str, *, in_functions: bool | None = False):
    """(ImportNode, [imported module names]) of a module: at module level (if/try blocks
    included, ``TYPE_CHECKING`` not), inside functions (``in_functions=True``) or both
    (None). ``from pkg import sub`` names ``pkg.sub`` when that is a module."""
    is_pkg = path.name == "__init__.py"
    out = []

    def names(node):
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        base = node.module or ""
        if node.level:
            pkg = name.split(".") if is_pkg else name.split(".")[:-1]
            pkg = pkg[:len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES
                or f"{base}.{a.name}" in STUDY_MODULES else base for a in node.names]

    def walk(node, in_fn):
        for ch in ast.iter_child_nodes(node):
            if _is_type_checking(ch):
                continue
            fn = in_fn or isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(ch, (ast.Import, ast.ImportFrom)) and (
                    in_functions is None or in_functions == in_fn):
                out.append((ch, names(ch)))
            walk(ch, fn)

    walk(ast.parse(path.read_text()), False)
    return out


def _module_of(target: str) -> str | None:
    """The mpicode module an imported name lives in (``mpicode.a.b.Name`` -> ``mpicode.a.b``)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _graph() -> dict[str, set[str]]:
    """Module-level imports between mpicode modules. Importing ``a.b.c`` also imports the
    packages ``a`` and ``a.b`` (unless the importer lives in them: a package may import
    its own submodules)."""
    g: dict[str, set[str]] = {m: set() for m in MODULES}
    for m, p in MODULES.items():
        for _, targets in _imports(p, m):
            for t in targets:
                t = _module_of(t) if t.startswith("mpicode") else None
                if t is None or t == m:
                    continue
                g[m].add(t)
                parts = t.split(".")
                for i in range(1, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent in MODULES and parent != m and not m.startswith(parent + "."):
                        g[m].add(parent)
    return g


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of the graph, or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(v):
        state[v] = 1
        path.append(v)
        for w in sorted(g.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state:
                found = visit(w)
                if found:
                    return found
        path.pop()
        state[v] = 2
        return None

    for v in sorted(g):
        if v not in state:
            found = visit(v)
            if found:
                return found
    return None


def _rel(m: str) -> str:
    return str(MODULES[m].relative_to(PKG))


def _all_imported(m: str) -> set[str]:
    return {t for _, ts in _imports(MODULES[m], m, in_functions=None) for t in ts}


# ---- the rules ------------------------------------------------------------------------
def test_no_import_cycle_at_module_level():
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle at module level: " + " -> ".join(cycle)


def test_only_the_mpi_package_imports_mpi4py():
    bad = [_rel(m) for m in MODULES if not m.startswith("mpicode.mpi")
           and any(t == "mpi4py" or t.startswith("mpi4py.") for t in _all_imported(m))]
    assert not bad, f"mpi4py imported outside mpicode/mpi/: {bad}"


def test_kernels_import_nothing_of_ours():
    mods = _all_imported("mpicode.numerics.kernels")
    assert not [t for t in mods if t.startswith("mpicode")], mods


def test_the_leaf_layer_imports_only_itself():
    bad = {_rel(m): sorted(t for t in map(_module_of, _all_imported(m)) if t and
                           t not in LEAF and t != "mpicode")
           for m in LEAF if _rel(m) not in LEAF_EXCEPTIONS}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"leaf modules importing above the leaf: {bad}"


def _allowed_for_policy(m: str, t: str) -> bool:
    own = m.split(".")[1]
    return (t in LEAF or t == "mpicode.registry" or t.startswith("mpicode.numerics")
            or t == f"mpicode.{own}" or t.startswith(f"mpicode.{own}."))


def test_policies_import_only_the_leaf_layer_the_registry_and_numerics():
    bad = {}
    for m in MODULES:
        if m.split(".")[1:2] and m.split(".")[1] in POLICIES:
            wrong = sorted({t for t in map(_module_of, _all_imported(m))
                            if t and not _allowed_for_policy(m, t)})
            if wrong:
                bad[_rel(m)] = wrong
    assert not bad, f"policies importing more than leaf, registry and numerics: {bad}"


def test_models_read_no_files():
    bad = {_rel(m): sorted(t for t in _all_imported(m) if t.startswith("mpicode.io")
                           or t == "h5py" or t.startswith("h5py."))
           for m in MODULES if m.startswith("mpicode.models")}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"models/ importing io/ or h5py: {bad}"


def test_imports_inside_functions_say_why():
    bad = []
    for m, p in MODULES.items():
        if _rel(m) in UNREASONED_LAZY:
            continue
        lines = p.read_text().splitlines()
        for node, targets in _imports(p, m, in_functions=True):
            if not any(t.startswith("mpicode") for t in targets):
                continue
            text = "\n".join(lines[node.lineno - 1:node.end_lineno])
            if "# lazy:" not in text:
                bad.append(f"{_rel(m)}:{node.lineno}: {ast.unparse(node)}")
    assert not bad, ("imports of mpicode inside functions without '# lazy: REASON' (move "
                     "them to the top, or say why they must wait):\n" + "\n".join(bad))


def test_long_modules_and_functions_are_one_concept_each():
    long_modules = {_rel(m) for m, p in MODULES.items()
                    if p.read_text().count("\n") > MODULE_LINES}
    long_functions = set()
    for m, p in MODULES.items():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.end_lineno - node.lineno + 1 > FUNCTION_LINES:
                long_functions.add(f"{_rel(m)}:{node.name}")
    assert long_modules <= set(LONG_MODULES), (
        f"modules over {MODULE_LINES} lines without a reason in LONG_MODULES: "
        f"{sorted(long_modules - set(LONG_MODULES))} (one concept may be long: say why; "
        "two concepts are two modules)")
    assert long_functions <= set(LONG_FUNCTIONS), sorted(long_functions - set(LONG_FUNCTIONS))
    stale = (set(LONG_MODULES) - long_modules) | (set(LONG_FUNCTIONS) - long_functions)
    assert not stale, f"allow-list entries no longer needed: {sorted(stale)}"
    assert all(r.strip() for r in (*LONG_MODULES.values(), *LONG_FUNCTIONS.values()))


def test_known_exceptions_still_exist():
    """Each entry of UNREASONED_LAZY names a file that still has an unreasoned lazy import,
    each of LEAF_EXCEPTIONS a leaf module that still imports above the leaf: remove the
    entry when its issue lands."""
    for rel, why in LEAF_EXCEPTIONS.items():
        m = next(k for k in MODULES if _rel(k) == rel)
        above = [t for t in map(_module_of, _all_imported(m)) if t and t not in LEAF
                 and t != "mpicode"]
        assert above, f"{rel} is a clean leaf now ({why}): remove its entry"
    for rel, why in UNREASONED_LAZY.items():
        m = next(k for k in MODULES if _rel(k) == rel)
        lines = MODULES[m].read_text().splitlines()
        left = [n for n, ts in _imports(MODULES[m], m, in_functions=True)
                if any(t.startswith("mpicode") for t in ts)
                and "# lazy:" not in "\n".join(lines[n.lineno - 1:n.end_lineno])]
        assert left, f"{rel} needs no exception any more ({why}): remove its entry"


# the parts only the assembly builds, and the attributes no module sets on another object
ASSEMBLED = ("EventLoop", "Trainer")
ASSEMBLY = "engine/assembly.py"
WIRED = ("hooks", "clock", "runlog", "progress", "now", "max_wait", "iteration", "mode",
         "scheme", "events", "backend", "uplink", "trainer", "inbox", "stragglers")


def _constructions(tree, names) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and (
        (isinstance(n.func, ast.Name) and n.func.id in names)
        or (isinstance(n.func, ast.Attribute) and n.func.attr in names))]


def _wirings(tree) -> list[ast.Attribute]:
    """Assignments ``x.ATTR = ...`` (x not ``self``) of an attribute in :data:`WIRED`."""
    out = []
    for n in ast.walk(tree):
        targets = n.targets if isinstance(n, ast.Assign) else (
            [n.target] if isinstance(n, (ast.AugAssign, ast.AnnAssign)) else [])
        for t in targets:
            for a in ast.walk(t):
                if isinstance(a, ast.Attribute) and a.attr in WIRED and not (
                        isinstance(a.value, ast.Name) and a.value.id in ("self", "cls")):
                    out.append(a)
    return out


def test_the_run_is_assembled_in_one_place():
    bad = [f"{_rel(m)}:{c.lineno}: {ast.unparse(c.func)}(...)" for m, p in MODULES.items()
           if _rel(m) != ASSEMBLY
           for c in _constructions(ast.parse(p.read_text()), ASSEMBLED)]
    assert not bad, f"built outside {ASSEMBLY} (use engine.assembly.build/assemble): {bad}"


def test_no_part_of_a_run_is_wired_by_assignment():
    bad = [f"{_rel(m)}:{a.lineno}: {ast.unparse(a)} = ..." for m, p in MODULES.items()
           for a in _wirings(ast.parse(p.read_text()))]
    assert not bad, ("collaborators assigned after construction (hand them in at "
                     f"construction; observe the loop with a hook): {bad}")


# ---- the research suite beside the product ------------------------------------------------
def test_the_product_imports_nothing_of_the_studies():
    bad = {_rel(m): sorted(t for t in _all_imported(m) if t == "studies"
                           or t.startswith("studies.") or (t.startswith(SHIMS)
                                                          and not m.startswith(SHIMS)))
           for m in MODULES}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, f"mpicode/ importing the research suite (studies/): {bad}"
    # nor by name (importlib, runpy), but in the old names, which are entry points only
    by_name = {_rel(m) for m, p in MODULES.items() if not m.startswith(SHIMS)
               for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Call)
               and ast.unparse(n.func).split(".")[-1] in DYNAMIC_IMPORTS and n.args
               and "studies" in ast.unparse(n.args[0])}
    assert not by_name, f"mpicode/ importing studies/ by name: {sorted(by_name)}"
    # the old names are entry points only: a study added there would be a study in the product
    assert {m for m in MODULES if m.startswith(SHIMS)} == {SHIMS, f"{SHIMS}.__main__"}, (
        "mpicode/experiments/ holds the old names only: a study goes in studies/")


def _public_name_uses(path: Path) -> list[str]:
    """What a studies module takes from mpicode that is not public: ``from mpicode.a import
    _b``, ``mpicode.a._b`` (a module), or ``m._b`` on a name bound to mpicode."""
    tree = ast.parse(path.read_text())
    bound, bad = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mpicode"):
            if any(part.startswith("_") for part in node.module.split(".")):
                bad.append(f"{node.lineno}: {node.module}")
            for a in node.names:
                if a.name.startswith("_"):
                    bad.append(f"{node.lineno}: {node.module}.{a.name}")
                bound.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("mpicode"):
                    if any(part.startswith("_") for part in a.name.split(".")):
                        bad.append(f"{node.lineno}: {a.name}")
                    bound.add((a.asname or a.name).split(".")[0])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and \
                not node.attr.startswith("__") and isinstance(node.value, ast.Name) and \
                node.value.id in bound:
            bad.append(f"{node.lineno}: {node.value.id}.{node.attr}")
    return bad


def test_the_studies_use_only_public_names_of_mpicode():
    bad = {str(p.relative_to(STUDIES.parent)): b for p in STUDY_MODULES.values()
           if (b := _public_name_uses(p))}
    assert not bad, f"studies/ using private names of mpicode (make them public): {bad}"


def test_no_import_cycle_in_the_studies():
    g: dict[str, set[str]] = {}
    for m, p in STUDY_MODULES.items():
        g[m] = set()
        for _, targets in _imports(p, m):
            for t in targets:
                while t and t not in STUDY_MODULES:
                    t = t.rpartition(".")[0]
                if t and t != m and t != "studies":  # the package holds only ROOT
                    g[m].add(t)
    assert find_cycle(g) is None, "import cycle in studies/: " + " -> ".join(find_cycle(g))
    assert g["studies.experiments"], "the scanner sees the suite's imports"


def test_the_studies_run_in_no_function_imports_without_a_reason():
    bad = []
    for m, p in STUDY_MODULES.items():
        lines = p.read_text().splitlines()
        for node, targets in _imports(p, m, in_functions=True):
            if any(t.startswith(("mpicode", "studies")) for t in targets) and \
                    "# lazy:" not in "\n".join(lines[node.lineno - 1:node.end_lineno]):
                bad.append(f"studies/{p.name}:{node.lineno}")
    assert not bad, bad


def test_the_public_name_rule_is_not_vacuous(tmp_path):
    p = tmp_path / "s.py"
    p.write_text("import mpicode.io.traces as tr\nfrom mpicode.io.traces import _write\n"
                 "from mpicode import _x\nfrom mpicode.stats import ci_dict as _ci\n"
                 "tr._read(1)\n_ci(1)\n")
    assert _public_name_uses(p) == ["2: mpicode.io.traces._write", "3: mpicode._x",
                                    "5: tr._read"]


# ---- the scanner itself ------------------------------------------------------------------
def test_the_cycle_finder_reports_the_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_scanner_is_not_vacuous(tmp_path):
    p = tmp_path / "m.py"
    p.write_text("from mpi4py import MPI\nimport mpicode.mpi.comm\n"
                 "def f():\n    from mpicode import registry  # lazy: test\n")
    top = {t for _, ts in _imports(p, "mpicode.m") for t in ts}
    inner = {t for _, ts in _imports(p, "mpicode.m", in_functions=True) for t in ts}
    assert top == {"mpi4py", "mpicode.mpi.comm"} and inner == {"mpicode.registry"}
    g = _graph()
    assert "mpicode.registry" in g["mpicode.config"]            # a real arrow is seen
    assert "mpicode.config" not in g["mpicode.registry"]        # ... and the layers hold
    wired = ast.parse("trainer.iteration = f\nself.clock = c\nevents.hooks.x = 1\n"
                      "sim.runlog = log\nrow['t'] = 1\nrun = Trainer(s, e)\n"
                      "ev = events.EventLoop(s)\n")
    assert [ast.unparse(a) for a in _wirings(wired)] == ["trainer.iteration", "events.hooks",
                                                          "sim.runlog"]
    assert len(_constructions(wired, ASSEMBLED)) == 2


def test_the_design_module_map_names_every_module():
    """docs/design.md §1.1 lists every module (a new one is added there with its layer)."""
    text = (PKG.parent / "docs" / "design.md").read_text()
    tree = text[text.index("### 1.1 The tree"):text.index("### 1.2")]
    missing = [_rel(m) for m, p in MODULES.items() if p.name not in tree]
    assert not missing, f"modules missing from docs/design.md §1.1: {missing}"
    studies = text[text.index("### 1.1 The tree"):text.index("### 1.2")]
    missing = [p.name for p in STUDY_MODULES.values() if p.name not in studies]
    assert "studies/" in studies and not missing, f"studies/ modules missing: {missing}"
