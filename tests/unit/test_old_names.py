"""The research suite's old names (``mpicode.experiments.X``) are the modules of ``studies/``
themselves, not copies; ``shipped`` stayed in the package (``mpicode.io.shipped``)."""

import importlib

import mpicode.io.shipped
import studies.experiments
import studies.publish
import studies.suite


def test_an_old_module_name_is_the_studies_module_itself():
    old = importlib.import_module("mpicode.experiments.suite")
    assert old is studies.suite
    assert studies.suite.__spec__.name == "studies.suite"  # its own spec, kept
    from mpicode.experiments import main, publish
    assert publish is studies.publish and main is studies.experiments.main


def test_the_shipped_traces_stayed_in_the_package():
    assert importlib.import_module("mpicode.experiments.shipped") is mpicode.io.shipped
    assert mpicode.io.shipped.__spec__.name == "mpicode.io.shipped"


def test_an_unknown_old_name_is_not_found():
    import pytest
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("mpicode.experiments.nonesuch")
