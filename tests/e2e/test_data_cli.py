"""Dataset import (CSV, LIBSVM, NPZ, scikit-learn), malformed inputs, label checks, partitioning."""

import numpy as np
import pytest
from runfiles import xy as _xy

from mpicode.config import UsageError
from mpicode.io.dataimport import import_dataset

# --- partitioning ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["logistic", "softmax", "least-squares"])
def test_load_config_synthetic_and_file(tmp_path, model):
    from types import SimpleNamespace

    from mpicode.io.datasets import load
    from mpicode.numerics.problem import Problem

    cfg = SimpleNamespace(dataset="synthetic", samples=120, features=6, seed=3, model=model,
                          dtype="float32", partitioning="dirichlet:1", l2=0.0)
    ds = load(cfg)
    assert ds.X.dtype == np.float32 and ds.task == {"logistic": "binary", "softmax": "multiclass",
                                                    "least-squares": "regression"}[model]
    pb = Problem.from_config(cfg, 5, data=ds)
    assert pb.dim == 6 * (ds.n_classes if model == "softmax" else 1)
    # a file whose labels do not fit the model is refused at load, naming the file
    X, y = _xy(labels="multiclass")
    np.savez(tmp_path / "m.npz", X=X, y=y)
    import_dataset(str(tmp_path / "m.npz"), str(tmp_path / "m.h5"))
    cfg.dataset = str(tmp_path / "m.h5")
    if model == "logistic":
        with pytest.raises(UsageError, match=r"m\.h5: y\[\d+\] = [2-4]\.0: labels must be 0/1"):
            load(cfg)
    else:
        assert load(cfg).X.shape[1] == 4
