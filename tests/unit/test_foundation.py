"""Serial tests of the foundation: configuration, data, straggler models, run log, report."""

import argparse
import json

import h5py
import numpy as np
import pytest

from mpicode import config
from mpicode.analysis.report import read_run, render
from mpicode.cli import build_parser
from mpicode.config import Config, UsageError, resolve, show, validate_for_size
from mpicode.io.datasets import partition_bounds, read_dataset, synthetic, write_dataset
from mpicode.io.runlog import ITERATION_FIELDS, RunLog
from mpicode.models.stragglers import MODELS, make_straggler_model


def cfg_of(argv):
    return resolve(build_parser().parse_args(["train", *argv]))


def defaults(**kw):
    v = dict(config.defaults().values)
    v.update(kw)
    return Config(v)


def test_config_layers_defaults_file_cli(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('scheme = "ignore-stragglers"\niterations = 7\n[stragglers]\nstragglers = '
                 '"bimodal"\nslowdown = 3.0\n')
    c = cfg_of(["--config", str(f), "--iterations", "9"])
    assert c.scheme == "ignore-stragglers" and c.iterations == 9 and c.slowdown == 3.0
    assert c.stragglers == "bimodal" and c.lr == 0.5
    assert c.source["iterations"] == "cli" and c.source["scheme"] == str(f)
    assert "scheme = \"ignore-stragglers\"" in show(c)
    json.loads(c.to_json())


@pytest.mark.parametrize("text,msg", [
    ("iterations = 'x'", "invalid value"),
    ("nonsense = 1", "unknown key 'nonsense'"),
    ("iterations = [", "TOML syntax error"),
    ("scheme = 'foo'", "unknown value 'foo'"),
    ("rho = 1.5", "must be in (0, 1]"),
    ("iterations = 2.5", "invalid value"),
])
def test_config_file_errors(tmp_path, text, msg):
    f = tmp_path / "c.toml"
    f.write_text(text + "\n")
    with pytest.raises(UsageError, match=msg.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[")):
        cfg_of(["--config", str(f)])


def test_cli_errors_are_usage_errors():
    with pytest.raises(UsageError):
        cfg_of(["--iterations", "ten"])
    with pytest.raises(UsageError):
        build_parser().parse_args(["train", "--no-such"])


def test_validate_for_size():
    c = validate_for_size(defaults(), 4)
    assert c.partitions == 16 and c.n_workers == 4
    with pytest.raises(UsageError, match="too few ranks"):
        validate_for_size(defaults(), 0)
    with pytest.raises(UsageError, match="must be <"):
        validate_for_size(defaults(scheme="ignore-stragglers", stragglers_tolerated=4), 4)
    with pytest.raises(UsageError, match="multiple of s\\+1"):
        validate_for_size(defaults(scheme="frc", stragglers_tolerated=2), 4)
    with pytest.raises(UsageError, match="multiple of the number of workers"):
        validate_for_size(defaults(partitions=10), 4)


def test_synthetic_is_seeded_and_roundtrips(tmp_path):
    a, b = synthetic(300, 7, 5), synthetic(300, 7, 5)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, synthetic(300, 7, 6).X)
    assert set(np.unique(a.y)) <= {0.0, 1.0} and 0.2 < a.y.mean() < 0.8
    p = tmp_path / "d.h5"
    write_dataset(a, str(p))
    c = read_dataset(p)
    np.testing.assert_array_equal(c.X_test, a.X_test)
    with pytest.raises(UsageError, match="output exists"):
        write_dataset(a, str(p))


def test_corrupt_dataset_errors(tmp_path):
    p = tmp_path / "bad.h5"
    p.write_bytes(b"not hdf5 at all")
    with pytest.raises(UsageError, match="not a readable HDF5"):
        read_dataset(p)
    with h5py.File(tmp_path / "nan.h5", "w") as f:
        f["X"] = np.array([[np.nan, 1.0]])
        f["y"] = np.zeros(1)
        f["X_test"] = np.zeros((1, 2))
        f["y_test"] = np.zeros(1)
    with pytest.raises(UsageError, match="NaN"):
        read_dataset(tmp_path / "nan.h5")


def test_partition_bounds_cover_rows_once():
    b = partition_bounds(103, 8)
    assert b[0] == 0 and b[-1] == 103 and np.all(np.diff(b) >= 12)
    with pytest.raises(UsageError):
        partition_bounds(3, 8)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_straggler_models_seeded(name):
    cfg = defaults(stragglers=name, seed=2)
    m1, m2 = make_straggler_model(cfg, 8, 32), make_straggler_model(cfg, 8, 32)
    d1 = [m1.delay(it, w, k, 4) for it in range(5) for w in range(8) for k in range(2)]
    d2 = [m2.delay(it, w, k, 4) for it in range(5) for w in range(8) for k in range(2)]
    assert d1 == d2 and all(d >= 0 for d in d1)
    if name != "none":
        assert max(d1) > 0


def test_bimodal_slow_set_is_persistent():
    m = make_straggler_model(defaults(stragglers="bimodal", slowdown=5.0), 8, 32)
    assert m.slow.sum() == 2
    slow = np.flatnonzero(m.slow)[0]
    fast = np.flatnonzero(~m.slow)[0]
    assert m.delay(3, slow, 0, 4) == pytest.approx(5 * m.delay(3, fast, 0, 4))


def test_exp_per_iteration_only_first_task():
    m = make_straggler_model(defaults(stragglers="exp-per-iteration"), 4, 16)
    base = m.unit * m.load(4)
    assert m.delay(0, 1, 0, 4) > base
    assert m.delay(0, 1, 1, 4) == pytest.approx(base)


def test_runlog_appends_and_renames(tmp_path):
    out = tmp_path / "r.h5"
    log = RunLog(str(out), config_json="{}", n_workers=3, n_partitions=12,
                 attrs={"scheme": "uncoded"}, flush_every=0)  # 0: every row written at once
    assert (tmp_path / "r.h5.part").exists()
    for i in range(3):
        log.append({"iteration": i, "t_start": i, "t_end": i + 0.5, "loss": 1.0 / (i + 1),
                    "coverage": 1.0, "load": 1.0},
                   {"finish_s": np.arange(3.0)},
                   {"iteration": np.array([i, i]), "worker": np.array([0, 1])})
        assert log.f.attrs["n_done"] == i + 1
    with pytest.raises(KeyError):
        log.append({"bogus": 1}, {}, {})
    log.close()
    assert out.exists() and not (tmp_path / "r.h5.part").exists()
    run = read_run(str(out))
    assert run["n"] == 3 and run["attrs"]["status"] == "complete"
    assert set(ITERATION_FIELDS) <= set(run["iterations"])
    assert run["tasks"]["worker"].tolist() == [0, 1] * 3
    assert np.isnan(run["iterations"]["decode_s"]).all()
    assert "uncoded" in render([str(out)])
    assert json.loads(render([str(out)], fmt="json"))[0]["iterations"] == 3
    with pytest.raises(UsageError, match="output exists"):
        RunLog(str(out), config_json="{}", n_workers=3, n_partitions=12)


def test_report_of_missing_file_is_usage_error(tmp_path):
    with pytest.raises(UsageError):
        read_run(str(tmp_path / "none.h5"))
    assert isinstance(build_parser().parse_args(["report", "a.h5"]), argparse.Namespace)
