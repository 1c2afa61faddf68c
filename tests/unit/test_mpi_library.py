"""The ``mpi_library`` run attribute is a clean first line of the library's version, whatever
the library: Open MPI's string ends in a NUL, which an HDF5 string attribute refuses (a run
under Open MPI died creating its run file).

    python -m pytest -q tests/unit/test_mpi_library.py
"""

import h5py
import pytest

from mpicode.mpi import comm


class _Fake:
    def __init__(self, text):
        self.text = text

    def Get_library_version(self):  # noqa: N802 (mpi4py's name)
        return self.text


@pytest.mark.parametrize("text,line", [
    ("Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11\x00",
     "Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11"),
    ("MPICH Version:      5.0.2\nMPICH Release date: unreleased\n", "MPICH Version:      5.0.2"),
])
def test_the_library_line_can_be_an_hdf5_attribute(monkeypatch, tmp_path, text, line):
    monkeypatch.setattr(comm, "MPI", _Fake(text))
    assert comm.mpi_library() == line
    with h5py.File(tmp_path / "run.h5", "w") as f:
        f.attrs["mpi_library"] = comm.mpi_library()
