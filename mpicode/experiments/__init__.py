"""The old names of the research suite, which lives in ``studies/`` beside the package (a
source checkout's; the wheel does not ship it). Entry points only: nothing of mpicode imports
this package, and importing it imports nothing of ``studies`` until a name is asked for::

    python -m mpicode.experiments            # = python -m studies (make experiments)
    python -m mpicode.experiments.rivals     # = python -m studies.rivals, and so on
    python -m mpicode.experiments.shipped    # = python -m mpicode.io.shipped (make data)
    from mpicode.experiments.suite import Suite   # the module studies.suite itself

``mpicode.experiments.X`` is the module ``studies.X`` (the same object, not a copy), found by
:class:`_OldNames` on ``sys.meta_path``. Where ``studies`` is not importable (mpicode installed
from a wheel, or run from outside the checkout with an editable install), the checkout beside
the installed package is put on ``sys.path``; without one: ``mpicode: error: the research
suite (studies/) is in the source tree; run from a checkout``, exit 2.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

# the one old name that stayed in the package: the shipped traces (make data)
MOVED = {"shipped": "mpicode.io.shipped"}
NO_SUITE = ("mpicode: error: the research suite (studies/) is in the source tree; "
            "run from a checkout")


def studies_importable() -> bool:
    """Can ``studies`` be imported? If not on ``sys.path`` but beside the installed package
    (an editable install run from elsewhere), that checkout is appended to ``sys.path``."""
    if importlib.util.find_spec("studies") is not None:
        return True
    root = Path(__file__).resolve().parents[2]
    if (root / "studies" / "__init__.py").is_file():
        sys.path.append(str(root))
        importlib.invalidate_caches()
        return importlib.util.find_spec("studies") is not None
    return False


def require_studies() -> None:
    """Exit 2 with one line where the research suite is not at hand."""
    if not studies_importable():
        print(NO_SUITE, file=sys.stderr)
        raise SystemExit(2)


def target(name: str) -> str:
    """The module an old name ``mpicode.experiments.X`` now is."""
    leaf = name.rpartition(".")[2]
    return MOVED.get(leaf) or f"studies.{leaf}"


class _OldNames(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    """``mpicode.experiments.X`` -> ``studies.X``: imports get the module itself; ``python -m``
    (runpy asks the loader for the code) runs its code as ``__main__``."""

    def find_spec(self, name, path=None, target_=None):
        if not name.startswith(__name__ + ".") or name.count(".") != 2 \
                or name.endswith(".__main__"):
            return None
        if not target(name).startswith("mpicode."):
            require_studies()
        if importlib.util.find_spec(target(name)) is None:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        module = importlib.import_module(target(spec.name))
        spec.loader_state = module.__spec__  # the import system is about to overwrite it
        return module

    def exec_module(self, module):
        # the module is the new one, already run: give it back its own __spec__
        module.__spec__ = module.__spec__.loader_state

    def get_code(self, fullname):
        new = target(fullname)
        return importlib.util.find_spec(new).loader.get_code(new)

    def get_source(self, fullname):
        new = target(fullname)
        return importlib.util.find_spec(new).loader.get_source(new)

    def is_package(self, fullname):
        return False


if not any(isinstance(f, _OldNames) for f in sys.meta_path):
    sys.meta_path.append(_OldNames())


def __getattr__(name: str):
    """``from mpicode.experiments import main`` (the suite's entry point, old name)."""
    if name.startswith("__"):
        raise AttributeError(name)
    require_studies()
    return getattr(importlib.import_module("studies.experiments"), name)
