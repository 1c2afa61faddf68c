"""What a new user hits first: usage without a command, help without doubled or empty
defaults, simulate-only options hidden from train, TOML typos with a suggestion."""

import pytest

from mpicode import cli, config
from mpicode.config import UsageError


def test_no_command_prints_the_usage_and_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: mpicode") and "a command is required" in err


def test_help_has_one_default_and_train_hides_simulate_only_options():
    p = cli.build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices
    train, sim = sub["train"].format_help(), sub["simulate"].format_help()
    assert "--workers" not in train and "--workers" in sim
    assert "(default: None)" not in train and "(default 4N) (default" not in train
    assert "micro-partitions K (default 4N)" in " ".join(train.split())
    args = sub["train"].parse_args(["--workers", "3"])  # still accepted (TOML files share keys)
    assert args.workers == "3"


def test_toml_typos_get_the_nearest_name(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("iteratoins = 3\n")
    with pytest.raises(UsageError, match="did you mean 'iterations'"):
        config.load_toml(str(f))
    f.write_text("[stragglerz]\nshift = 1.0\n")
    with pytest.raises(UsageError, match=r"unknown section \[stragglerz\].*'stragglers'"):
        config.load_toml(str(f))
    f.write_text("[stragglers]\nshift = 1.0\n[data]\nsamples = 100\n")
    assert config.load_toml(str(f)) == {"shift": 1.0, "samples": 100}
