"""Dataset import (CSV, LIBSVM, NPZ, scikit-learn), malformed inputs, label checks, partitioning."""

import numpy as np
import pytest
from runfiles import xy as _xy

from mpicode.config import UsageError
from mpicode.io.dataimport import import_dataset, main_import, sklearn_available
from mpicode.io.datasets import Dataset, check_labels, partition_rows, read_dataset


def _same_rows(ds, X, y):
    """The imported train+test rows are a permutation of the source rows."""
    A = np.column_stack([np.vstack([ds.X, ds.X_test]), np.concatenate([ds.y, ds.y_test])])
    B = np.column_stack([X, y])
    key = lambda M: M[np.lexsort(M.T[::-1])]  # noqa: E731
    np.testing.assert_allclose(key(A), key(B), rtol=0, atol=1e-12)


def test_csv_round_trip_with_header_and_label_column(tmp_path):
    X, y = _xy()
    p = tmp_path / "a.csv"
    lines = ["f0,label,f1,f2,f3"] + [
        ",".join([repr(float(r[0])), repr(float(t))] + [repr(float(v)) for v in r[1:]])
        for r, t in zip(X, y, strict=True)]
    p.write_text("\n".join(lines) + "\n")
    out = tmp_path / "a.h5"
    ds = import_dataset(str(p), str(out), label_column="label", test_fraction=0.25, seed=1)
    back = read_dataset(out)
    assert back.task == "binary" and back.n_classes == 2
    assert back.X.shape == (17, 4) and back.X_test.shape == (6, 4)
    np.testing.assert_array_equal(back.X, ds.X)
    _same_rows(back, X, y)
    # same seed, same file: same shuffle; by index too
    out2 = tmp_path / "b.h5"
    main_import([str(p), "--out", str(out2), "--label-column", "1", "--test-fraction", "0.25",
                 "--seed", "1"])
    np.testing.assert_array_equal(read_dataset(out2).X, back.X)


def test_csv_last_column_default_and_regression(tmp_path):
    X, y = _xy(labels="regression")
    p = tmp_path / "r.csv"
    np.savetxt(p, np.column_stack([X, y]), delimiter=",")
    ds = read_dataset(import_dataset(str(p), str(tmp_path / "r.h5")) and tmp_path / "r.h5")
    assert ds.task == "regression" and ds.n_classes == 0
    _same_rows(ds, X, y)


def test_standardize_uses_train_statistics(tmp_path):
    X, y = _xy(n=50, labels="multiclass")
    X = X * 7 + 3
    p = tmp_path / "m.npz"
    np.savez(p, X=X, y=y)
    ds = import_dataset(str(p), str(tmp_path / "m.h5"), standardize=True, test_fraction=0.2)
    assert ds.task == "multiclass" and ds.n_classes == int(y.max()) + 1
    np.testing.assert_allclose(ds.X.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(ds.X.std(0), 1, atol=1e-12)
    assert np.abs(ds.X_test.mean(0)).max() > 1e-6  # test rows are not re-fitted
    Xr, yr = _xy(n=40, labels="regression")
    np.savez(p, X=Xr, y=yr + 100)
    ds = import_dataset(str(p), str(tmp_path / "r.h5"), standardize=True, test_fraction=0.25)
    assert ds.task == "regression" and abs(ds.y.mean()) < 1e-9
    import h5py

    with h5py.File(tmp_path / "r.h5") as f:
        off = f.attrs["y_offset"]
    np.testing.assert_allclose(np.sort(np.concatenate([ds.y, ds.y_test]) + off),
                               np.sort(yr + 100))


def test_npz_round_trip(tmp_path):
    X, y = _xy(labels="multiclass")
    p = tmp_path / "d.npz"
    np.savez(p, X=X, y=y)
    import_dataset(str(p), str(tmp_path / "d.h5"), test_fraction=0.3)
    _same_rows(read_dataset(tmp_path / "d.h5"), X, y)


def test_libsvm_round_trip_sparse_and_pm1_labels(tmp_path):
    X, y = _xy()
    X[X < 0] = 0.0
    p = tmp_path / "s.svm"
    with open(p, "w") as f:
        f.write("# a comment line\n")
        for r, t in zip(X, y, strict=True):
            ent = " ".join(f"{j + 1}:{float(v)!r}" for j, v in enumerate(r) if v != 0)
            f.write(f"{'+1' if t else '-1'} qid:3 {ent}  # trailing\n")
    ds = import_dataset(str(p), str(tmp_path / "s.h5"), test_fraction=0.2)
    assert ds.task == "binary"
    back = read_dataset(tmp_path / "s.h5")
    # a trailing all-zero column cannot be recovered from a sparse file: compare what is there
    d = back.X.shape[1]
    _same_rows(back, X[:, :d], y)
    assert np.all(X[:, d:] == 0)


@pytest.mark.parametrize("name, text, where", [
    ("bad.svm", "1 1:0.5 2:1\n0 3-1.0\n", "bad.svm:2"),
    ("bad2.svm", "1 1:0.5\n0 a:1\n", "bad2.svm:2"),
    ("bad3.svm", "1 1:0.5\nx 1:1\n", "bad3.svm:2"),
    ("bad4.svm", "1 1:0.5\n0 1:1 1:2\n", "bad4.svm:2"),
    ("bad5.svm", "1 1:nan\n", "bad5.svm:1"),
    ("rag.csv", "1,2,3\n4,5,6\n7,8\n", "rag.csv:3"),
    ("nonnum.csv", "a,b,y\n1,2,0\n3,x,1\n", "nonnum.csv:3, column 2"),
    ("nan.csv", "1,2,0\n3,nan,1\n", "nan.csv:2, column 2"),
    ("inf.csv", "1,2,0\n3,4,1\ninf,4,1\n", "inf.csv:3, column 1"),
    ("empty.csv", "\n# only a comment\n", "empty.csv"),
])
def test_malformed_text_inputs_name_file_and_line(tmp_path, name, text, where):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(UsageError) as e:
        import_dataset(str(p), str(tmp_path / "o.h5"))
    msg = str(e.value)
    assert where in msg and "\n" not in msg
    assert not (tmp_path / "o.h5").exists()


def test_malformed_npz(tmp_path):
    p = tmp_path / "n.npz"
    X, y = _xy()
    X[4, 2] = np.inf
    np.savez(p, X=X, y=y)
    with pytest.raises(UsageError, match=r"n\.npz: X row 4, column 2: NaN or inf"):
        import_dataset(str(p), str(tmp_path / "o.h5"))
    np.savez(p, A=X)
    with pytest.raises(UsageError, match=r"n\.npz: missing array\(s\) X, y"):
        import_dataset(str(p), str(tmp_path / "o.h5"))
    np.savez(p, X=X[:, 0], y=y)
    with pytest.raises(UsageError, match=r"n\.npz: need X"):
        import_dataset(str(p), str(tmp_path / "o.h5"))


def test_bad_label_column_and_existing_output(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("x,y\n1,0\n2,1\n3,0\n")
    with pytest.raises(UsageError, match="a.csv: no column named 'z'"):
        import_dataset(str(p), str(tmp_path / "o.h5"), label_column="z")
    with pytest.raises(UsageError, match="a.csv: --label-column 5 out of range"):
        import_dataset(str(p), str(tmp_path / "o.h5"), label_column=5)
    import_dataset(str(p), str(tmp_path / "o.h5"))
    with pytest.raises(UsageError, match="output exists"):
        import_dataset(str(p), str(tmp_path / "o.h5"))
    import_dataset(str(p), str(tmp_path / "o.h5"), force=True)
    with pytest.raises(UsageError, match="task binary needs labels 0/1"):
        p.write_text("x,y\n1,0\n2,2\n")
        import_dataset(str(p), str(tmp_path / "o.h5"), task="binary", force=True)


def _ds(y, yt=None, n_classes=2, task="binary"):
    y = np.asarray(y, float)
    yt = y[:2] if yt is None else np.asarray(yt, float)
    return Dataset("t", np.zeros((y.size, 1)), y, np.zeros((yt.size, 1)), yt, task, n_classes)


def test_labels_checked_against_the_model():
    check_labels(_ds([0, 1, 1]), "logistic", "f.h5")
    with pytest.raises(UsageError, match=r"f\.h5: y\[1\] = 2\.0: labels must be 0/1"):
        check_labels(_ds([0, 2, 1]), "logistic", "f.h5")
    check_labels(_ds([0, 2, 1], n_classes=3), "softmax", "f.h5")
    with pytest.raises(UsageError, match=r"y_test\[0\] = 3\.0.*integers 0\.\.2"):
        check_labels(_ds([0, 2, 1], yt=[3], n_classes=3), "softmax", "f.h5")
    with pytest.raises(UsageError, match=r"y\[0\] = 0\.5"):
        check_labels(_ds([0.5, 2, 1], n_classes=3), "softmax", "f.h5")
    check_labels(_ds([-3.5, 2e6], n_classes=0, task="regression"), "least-squares", "f.h5")


@pytest.mark.skipif(not sklearn_available(), reason="scikit-learn not installed (extra 'data')")
@pytest.mark.parametrize("name, task, nc", [("digits", "multiclass", 10),
                                            ("breast_cancer", "binary", 2),
                                            ("diabetes", "regression", 0)])
def test_sklearn_bundled(tmp_path, name, task, nc):
    ds = import_dataset(name, str(tmp_path / f"{name}.h5"), standardize=True)
    back = read_dataset(tmp_path / f"{name}.h5")
    assert (back.task, back.n_classes) == (task, nc)
    np.testing.assert_array_equal(back.X, ds.X)


def test_sklearn_missing_is_a_clear_usage_error(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_sklearn(name, *a, **k):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(UsageError, match="needs scikit-learn, which is not installed"):
        import_dataset("digits", str(tmp_path / "d.h5"))


# --- partitioning ----------------------------------------------------------------------------

def _labels(n=1000, C=5, seed=0):
    return np.random.default_rng(seed).integers(0, C, n).astype(float)


@pytest.mark.parametrize("scheme", ["iid", "sorted", "dirichlet:0.3", "dirichlet:100"])
@pytest.mark.parametrize("K", [1, 7, 40])
def test_every_row_in_exactly_one_partition(scheme, K):
    y = _labels()
    parts = partition_rows(y, K, scheme, seed=2)
    assert len(parts) == K and all(p.size > 0 for p in parts)
    allrows = np.concatenate(parts)
    np.testing.assert_array_equal(np.sort(allrows), np.arange(y.size))
    assert all(np.all(np.diff(p) > 0) for p in parts)


def test_iid_is_contiguous_and_near_equal():
    parts = partition_rows(_labels(), 7, "iid")
    assert all(p[-1] - p[0] + 1 == p.size for p in parts)
    assert max(p.size for p in parts) - min(p.size for p in parts) <= 1


def test_sorted_is_label_sorted():
    y = _labels()
    parts = partition_rows(y, 9, "sorted")
    assert all(y[a].max() <= y[b].min() for a, b in zip(parts[:-1], parts[1:], strict=True))


def _skew(y, parts, C=5):
    """Mean total-variation distance between partition label histograms and the global one."""
    glob = np.bincount(y.astype(int), minlength=C) / y.size
    return np.mean([0.5 * np.abs(np.bincount(y[p].astype(int), minlength=C) / p.size - glob).sum()
                    for p in parts])


def test_dirichlet_is_seeded_and_skewed():
    y = _labels(2000)
    a = partition_rows(y, 10, "dirichlet:0.1", seed=4)
    b = partition_rows(y, 10, "dirichlet:0.1", seed=4)
    c = partition_rows(y, 10, "dirichlet:0.1", seed=5)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not all(np.array_equal(p, q) for p, q in zip(a, c, strict=True))
    assert _skew(y, a) > 0.4 > 0.1 > _skew(y, partition_rows(y, 10, "iid"))
    assert _skew(y, a) > _skew(y, partition_rows(y, 10, "dirichlet:100", seed=4))


def test_dirichlet_on_a_regression_target_and_bad_specs():
    y = np.random.default_rng(0).standard_normal(300)
    parts = partition_rows(y, 6, "dirichlet:0.5", seed=1)
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(300))
    for bad in ("dirichlet:0", "dirichlet:x", "random"):
        with pytest.raises(UsageError):
            partition_rows(y, 6, bad)
    with pytest.raises(UsageError, match="exceeds"):
        partition_rows(y[:3], 6, "iid")


