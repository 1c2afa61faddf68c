"""Project basics: license, citation, changelog, one version everywhere, Python >= 3.11."""

import re
import tomllib

import pytest
from conftest import ROOT

import mpicode
from mpicode.cli import main


def _pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)


def test_license_matches_pyproject():
    p = _pyproject()["project"]
    text = (ROOT / "LICENSE").read_text()
    assert p["license"] == "BSD-3-Clause" and "LICENSE" in p["license-files"]
    assert text.startswith("BSD 3-Clause License") and "the mpicode developers" in text
    assert "Neither the name of the copyright holder" in text  # clause 3


def test_one_version_everywhere(capsys):
    p = _pyproject()
    assert "version" in p["project"]["dynamic"] and "version" not in p["project"]
    assert p["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "mpicode.__version__"}
    v = mpicode.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", v)  # PEP 440, as CHANGELOG.md says
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"mpicode {v}"
    cff = (ROOT / "CITATION.cff").read_text()
    assert f'version: "{v}"' in cff
    base = v.split(".dev")[0]
    log = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(base)}( \(unreleased\)| \(\d{{4}}-\d\d-\d\d\))$", log,
                     re.M)
    assert "## 0.1.0" in log and "git tag -a v" in log


def test_citation_names_the_software_and_the_paper():
    cff = (ROOT / "CITATION.cff").read_text()
    assert cff.startswith("cff-version: 1.2.0") and "type: software" in cff
    assert "Two-Stage Coded Distributed Learning: A Dynamic Partial Gradient Coding " \
           "Perspective" in cff and "ICDCS" in cff and "license: BSD-3-Clause" in cff


def test_python_floor_is_311():
    p = _pyproject()
    assert p["project"]["requires-python"] == ">=3.11"
    assert p["tool"]["ruff"]["target-version"] == "py311"
