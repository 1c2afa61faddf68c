"""What a new user hits importing data: labels recoded to 0..K-1 (LIBSVM 1..K, text CSV labels)
with the mapping recorded, multilabel refused, the model hint on a label mismatch, the default
4N in the --partitions error, `data bundled` saying what it wrote, and the divergence warning."""

import json

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpicode.config import Config, UsageError
from mpicode.engine.divergence import DivergenceWatch
from mpicode.io.dataimport import describe, import_dataset, main_import, print_bundled
from mpicode.io.datasets import Dataset, check_labels, read_dataset
from mpicode.io.labels import infer_task
from mpicode.numerics.problem import Problem


def _libsvm(tmp_path, labels, name="m.svm"):
    rng = np.random.default_rng(1)
    p = tmp_path / name
    p.write_text("".join(f"{t} 1:{rng.random():.4f} 2:{rng.random():.4f}\n" for t in labels))
    return str(p)


def test_libsvm_multiclass_1_to_4_becomes_0_to_3(tmp_path, capsys):
    labels = [1, 2, 3, 4] * 5
    src = _libsvm(tmp_path, labels)
    assert main_import([src, "--out", str(tmp_path / "m.h5")]) == 0
    out = capsys.readouterr().out
    assert "labels recoded to 0..3 (1 -> 0, 2 -> 1, 3 -> 2, 4 -> 3)" in out
    assert "4 classes, task multiclass (--model softmax)" in out
    ds = read_dataset(tmp_path / "m.h5")
    assert ds.n_classes == 4 and set(np.concatenate([ds.y, ds.y_test]).tolist()) == {0, 1, 2, 3}
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert json.loads(f.attrs["label_mapping"]) == {"1": 0, "2": 1, "3": 2, "4": 3}


def test_libsvm_multilabel_is_refused(tmp_path):
    src = _libsvm(tmp_path, ["1", "2,3", "1"])
    with pytest.raises(UsageError, match=r"m\.svm:2: label '2,3': multilabel not supported"):
        import_dataset(src, str(tmp_path / "m.h5"))
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize("header", [True, False])
def test_csv_text_labels_are_encoded_and_recorded(tmp_path, header):
    names = ["setosa", "versicolor", "virginica", "setosa"] * 6
    p = tmp_path / "iris.csv"
    p.write_text(("sl,sw,species\n" if header else "") + "".join(
        f"{i * 0.1:.1f},{i % 7},{n}\n" for i, n in enumerate(names)))
    notes = []
    ds = import_dataset(str(p), str(tmp_path / "i.h5"), test_fraction=0.25, notes=notes)
    assert ds.task == "multiclass" and ds.n_classes == 3 and ds.n_features == 2
    assert "setosa -> 0, versicolor -> 1, virginica -> 2" in notes[0]
    with h5py.File(tmp_path / "i.h5", "r") as f:
        assert json.loads(f.attrs["label_mapping"]) == {"setosa": 0, "versicolor": 1,
                                                        "virginica": 2}
    # every row kept its class: feature sl (row index / 10) identifies the row
    back = read_dataset(tmp_path / "i.h5")
    X = np.vstack([back.X, back.X_test])
    y = np.concatenate([back.y, back.y_test])
    code = {"setosa": 0, "versicolor": 1, "virginica": 2}
    for x, t in zip(X, y, strict=True):
        assert t == code[names[int(round(x[0] * 10))]]


def test_csv_text_in_a_feature_column_is_still_an_error(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("a,b,y\n1,2,cat\n3,x,dog\n")
    with pytest.raises(UsageError, match=r"t\.csv:3, column 2: not a number"):
        import_dataset(str(p), str(tmp_path / "t.h5"))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-3, 12), min_size=1, max_size=40))
def test_infer_task_codes_are_order_preserving(labels):
    y = np.array(labels, float)
    got, task, k, mapping = infer_task(y, "auto", "t")
    if task == "regression":
        return
    vals = np.unique(y)
    assert got.min() >= 0 and got.max() < k
    # order-preserving: the same ranks as the original labels
    np.testing.assert_array_equal(np.argsort(got, kind="stable"), np.argsort(y, kind="stable"))
    if mapping:
        assert [mapping[str(int(v))] for v in vals] == list(range(vals.size))
    else:
        assert vals[0] == 0 or set(vals.tolist()) <= {0.0, 1.0}
        np.testing.assert_array_equal(got, y)


def test_binary_1_2_and_pm1_become_0_1():
    for raw in ([1, 2, 2, 1], [-1, 1, 1, -1]):
        y, task, k, mapping = infer_task(np.array(raw, float), "auto", "t")
        assert task == "binary" and k == 2 and y.tolist() == [0, 1, 1, 0] and mapping


def _ds(task, n_classes, y):
    y = np.asarray(y, float)
    return Dataset("wine", np.zeros((y.size, 1)), y, np.zeros((2, 1)), y[:2], task, n_classes)


def test_label_mismatch_suggests_the_model():
    with pytest.raises(UsageError, match=r"labels must be 0/1 for model logistic .*the dataset "
                                         r"is multiclass \(3 classes\): use --model softmax"):
        check_labels(_ds("multiclass", 3, [0, 1, 2]), "logistic", "data/wine.h5")
    with pytest.raises(UsageError, match="use --model least-squares"):
        check_labels(_ds("regression", 0, [0.5, 1.5]), "logistic", "r.h5")
    with pytest.raises(UsageError) as e:  # binary file, logistic: no hint to give
        check_labels(_ds("binary", 2, [0, 3]), "logistic", "b.h5")
    assert "--model" not in str(e.value)


def _cfg(**given):
    from mpicode.config import OPTIONS
    v = {o.name: o.default for o in OPTIONS}
    src = {o.name: "default" for o in OPTIONS}
    v.update(given)
    src.update({k: "cli" for k in given})
    return Config(v, src)


def test_partitions_error_says_it_is_the_default_4n():
    ds = _ds("binary", 2, [0, 1, 0, 1, 1])
    cfg = _cfg(n_workers=2).replace(partitions=8)  # validate_for_size filled K = 4N
    with pytest.raises(UsageError, match=r"--partitions 8 exceeds the 5 training rows \(8 is "
                                         r"the default 4N for N=2 workers, not given"):
        Problem.from_config(cfg, 8, data=ds)
    with pytest.raises(UsageError) as e:
        Problem.from_config(_cfg(partitions=8, n_workers=2), 8, data=ds)
    assert str(e.value) == "--partitions 8 exceeds the 5 training rows"


def test_data_bundled_prints_what_it_wrote(tmp_path, capsys):
    pytest.importorskip("sklearn")
    import_dataset("breast_cancer", str(tmp_path / "breast_cancer.h5"), standardize=True)
    print_bundled(str(tmp_path), [tmp_path / "breast_cancer.h5"])
    out = capsys.readouterr().out.strip()
    assert out == (f"wrote {tmp_path / 'breast_cancer.h5'}: breast_cancer, 455 train + 114 "
                   "test rows, 30 features, 2 classes, task binary (--model logistic)")
    print_bundled(str(tmp_path), [])
    assert "already present" in capsys.readouterr().out
    d = _ds("regression", 0, [1.0, 2.0])
    assert describe("r.h5", d).endswith("1 features, task regression (--model least-squares)")


class _Pb:
    def __init__(self, X):
        self.X = X

    def evaluate(self, w):
        assert not np.any(w)
        return {"loss": float(np.log(2))}


def test_divergence_warns_once_and_names_the_cause(capsys):
    w = DivergenceWatch(_Pb(np.array([[1e4, 0.0], [-1e4, 1.0]])), np.ones(2))
    assert w.check(0, {"loss": 0.6}) is None and w.check(1, {"loss": 50.0}) is None
    msg = w.check(2, {"loss": 6e13})
    assert "loss 6e+13 at iteration 2" in msg and "--standardize" in msg
    assert w.check(3, {"loss": float("nan")}) is None  # once
    assert capsys.readouterr().err.count("warning: training diverges") == 1
    scaled = DivergenceWatch(_Pb(np.array([[1.0, 0.0], [-1.0, 1.0]])), np.ones(2))
    msg = scaled.check(0, {"loss": 1e9})
    assert "smaller --lr" in msg and "--standardize" not in msg
    # a non-finite loss is the run loop's hard stop (one line, with this hint): no warning
    assert DivergenceWatch(_Pb(np.ones((2, 2))), np.ones(2)).check(0, {"loss": np.inf}) is None
    assert DivergenceWatch(None, None).check(0, {"loss": float("inf")}) is None
