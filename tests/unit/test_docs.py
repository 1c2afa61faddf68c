"""The README is a short tour and the user guide the reference: the guide names every option
of ``train`` and ``simulate`` (its option reference is what the option tables generate) and
every option of every other command, and the links of the README, the guide and the results
README lead to files that exist. (The README's commands run in tests/e2e/test_readme.py.)

    .venv/bin/python -m pytest -q tests/unit/test_docs.py
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

from mpicode import registry
from mpicode.cli import build_parser
from mpicode.config import REFERENCE_END, REFERENCE_START
from mpicode.core_options import OPTIONS

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
GUIDE = ROOT / "docs" / "user-guide.md"


def builtin_options() -> list:
    """The core table and the options of every built-in class (a plugin a test registered
    is not documented here)."""
    out = list(OPTIONS)
    for kind in registry.KINDS:
        for cls in registry.registered(kind).values():
            o = registry.origin(cls)
            if o is None or o.builtin:
                out += list(getattr(cls, "options", ()))
    return out


def _command_options(parser, path=()):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _command_options(sub, (*path, name))
        elif a.help != argparse.SUPPRESS:
            for flag in a.option_strings:
                if flag.startswith("--") and flag != "--help":
                    yield " ".join(path), flag


def test_the_guide_names_every_option():
    text = GUIDE.read_text()
    missing = sorted({o.flag for o in builtin_options()} - set(re.findall(r"--[A-Za-z0-9-]+",
                                                                          text)))
    assert not missing, f"docs/user-guide.md does not name {missing} (make docs)"


def test_the_guide_names_every_option_of_every_command():
    text = GUIDE.read_text()
    words = set(re.findall(r"--[A-Za-z0-9-]+", text))
    missing = [f"mpicode {cmd} {flag}" for cmd, flag in _command_options(build_parser())
               if flag not in words]
    assert not missing, f"docs/user-guide.md does not mention {missing}"


def test_the_option_reference_is_generated_from_the_tables():
    """The guide's reference is ``mpicode config reference`` (a fresh process: the built-in
    classes, no plugin a test registered)."""
    text = GUIDE.read_text()
    a, b = text.index(REFERENCE_START), text.index(REFERENCE_END) + len(REFERENCE_END)
    r = subprocess.run([sys.executable, "-m", "mpicode", "config", "reference"],
                       capture_output=True, text=True, timeout=120, check=True)
    assert text[a:b] == r.stdout.rstrip("\n"), "stale option reference: run make docs"


def test_config_reference_write_replaces_only_between_its_markers(tmp_path):
    doc = tmp_path / "guide.md"
    doc.write_text(f"before\n{REFERENCE_START}\nSTALE TEXT\n{REFERENCE_END}\nafter\n")
    r = subprocess.run([sys.executable, "-m", "mpicode", "config", "reference", "--write",
                        str(doc)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith(f"{REFERENCE_END}\nafter\n")
    assert "STALE TEXT" not in text and "`--scheme`" in text
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    r = subprocess.run([sys.executable, "-m", "mpicode", "config", "reference", "--write",
                        str(bare)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("mpicode: error:")
    assert bare.read_text() == "no markers\n"


def test_the_readme_is_a_short_tour():
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for section in ("Install", "Quick start", "Train", "Simulate", "Report", "Results",
                    "Where to go next", "Tests"):
        assert re.search(rf"^## {section}$", text, re.M), section
    assert "make test" in text  # CI calls it
    for doc in ("docs/user-guide.md", "docs/design.md", "docs/extending.md",
                "results/README.md", "CHANGELOG.md"):
        assert f"]({doc})" in text, doc


def test_links_lead_to_files_that_exist():
    bad = []
    for doc in (README, GUIDE, ROOT / "results" / "README.md", ROOT / "CHANGELOG.md"):
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if re.match(r"(https?:|mailto:|#)", target):
                continue
            path = (doc.parent / target.split("#")[0]).resolve()
            if not path.exists():
                bad.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not bad, bad
