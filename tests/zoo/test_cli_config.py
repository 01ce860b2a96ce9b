"""Config resolution and the error messages of zoo/config.py (and the CLI's exit on them)."""

from __future__ import annotations

import pytest
from zoo_helpers import ENV, run_prefzoo

from prefzoo.zoo import compare, config
from prefzoo.zoo.config import ConfigError


def test_packaged_wind_config_resolves():
    cfg = config.resolve("wind", ENV, seed=3, device="cpu")
    assert cfg.hyperparams["mode"] == "sample" and cfg.hyperparams["device"] == "cpu"
    assert list(cfg.hyperparams) == sorted(cfg.hyperparams)
    assert not set(config.RUNNER_KEYS) & set(cfg.hyperparams)  # runner keys popped
    assert cfg.seed == 3 and cfg.iterations > 0


def test_exact_id_before_default_and_overrides_last(tmp_path):
    (tmp_path / "wind.yml").write_text(
        "default: &d\n  beta: 0.1\n  eta: 1.0\n  iterations: 7\n"
        f"{ENV}:\n  <<: *d\n  beta: 0.3\n  env_kwargs: {{n_contexts: 2}}\n")
    cfg = config.resolve("wind", ENV, overrides=config.parse_overrides(["eta=!!float 2", "save_freq=0"]),
                         directory=tmp_path)
    assert cfg.hyperparams["beta"] == 0.3 and cfg.hyperparams["eta"] == 2.0
    assert (cfg.iterations, cfg.save_freq, cfg.env_kwargs) == (7, 0, {"n_contexts": 2})
    other = config.resolve("wind", "prefzoo/PrefBandit-v0", directory=tmp_path)
    assert other.hyperparams["beta"] == 0.1 and other.env_kwargs == {}


def test_unknown_algorithm_suggests_closest():
    with pytest.raises(ConfigError, match=r"unknown algorithm 'wnd' \(did you mean 'wind'\?\); valid: .*wind"):
        config.resolve("wnd", ENV)


def test_unknown_env_suggests_closest():
    with pytest.raises(ConfigError, match=r"did you mean 'prefzoo/PrefBandit-Cyclic-v0'\?.*PrefBandit-Mixed-v0"):
        config.resolve("wind", "prefzoo/PrefBandit-Cyclc-v0")


def test_unknown_hyperparameter_fails_before_construction(monkeypatch, tiny_configs):
    built = []
    monkeypatch.setattr("prefzoo.zoo.runner.build", lambda cfg: built.append(cfg))
    with pytest.raises(ConfigError, match=r"unknown hyperparameter for wind .*'betta' \(did you mean 'beta'\?\); "
                                          r"valid: .*eta"):
        config.resolve("wind", ENV, overrides={"betta": 0.2}, directory=tiny_configs)
    assert not built


def test_bad_overrides():
    with pytest.raises(ConfigError, match="expected key=value"):
        config.parse_overrides(["beta"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.parse_overrides(["beta=[0.1, 0.2"])
    with pytest.raises(ConfigError, match="iterations must be an integer >= 1"):
        config.resolve("wind", ENV, overrides={"iterations": "many"})
    assert config.parse_overrides(["policy=mlp", "lr=!!float 1e-3", "env_kwargs={n_actions: 4}"]) == {
        "policy": "mlp", "lr": 1e-3, "env_kwargs": {"n_actions": 4}}


def test_broken_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "wind.yml"
    path.write_text("default:\n  beta: 0.1\n  eta: [1.0, 2.0\n  lr: 0.1\n")
    with pytest.raises(ConfigError) as err:
        config.resolve("wind", ENV, directory=tmp_path)
    message = str(err.value)
    assert f"malformed YAML in {path}:" in message
    line = int(message.split(f"{path}:")[1].split(":")[0])
    assert line in (3, 4), message  # the unclosed list (PyYAML reports where it noticed)


def test_missing_entry_lists_known_ids(tmp_path):
    (tmp_path / "wind.yml").write_text("prefzoo/PrefBandit-v0:\n  beta: 0.1\n")
    with pytest.raises(ConfigError, match=r"no entry for 'prefzoo/PrefBandit-Cyclic-v0' and no 'default'; "
                                          r"known ids: \['prefzoo/PrefBandit-v0'\]"):
        config.resolve("wind", ENV, directory=tmp_path)


def test_cli_reports_errors_without_traceback(tiny_configs, tmp_path):
    proc = run_prefzoo(tiny_configs, tmp_path, "train", "--algo", "wind", "--env", ENV, "--hp", "lr=0.1",
                       "grad_step=3", check=False)
    assert proc.returncode == 2
    assert "did you mean 'grad_steps'?" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "logs").exists()


def test_a_gymnasium_env_that_is_no_preference_game_is_refused_before_anything_is_written(tiny_configs, tmp_path):
    proc = run_prefzoo(tiny_configs, tmp_path, "train", "--algo", "wind", "--env", "CartPole-v1", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "'CartPole-v1' is registered with Gymnasium but is not a preference game" in proc.stderr
    with pytest.raises(ConfigError, match="not a preference game"):  # compare resolves every config first
        compare.compare(["wind"], "CartPole-v1", [0], tmp_path / "out", budget=100, progress=False)
    assert not (tmp_path / "logs").exists() and not (tmp_path / "out" / "logs").exists()


def alias_bomb(levels: int) -> str:
    """``a0: &a0 [x, x, …]`` and each level a list of ten aliases of the one below: 10^levels leaves."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_yaml_whose_aliases_expand_past_the_cap_is_refused_before_it_is_built(tmp_path, tiny_configs):
    import tracemalloc

    bomb = alias_bomb(9)  # a few hundred bytes, 10^9 leaves once expanded
    assert len(bomb) < 600
    (tmp_path / "wind.yml").write_text(bomb)
    tracemalloc.start()
    with pytest.raises(ConfigError, match=r"wind.yml: its YAML aliases expand to [\d,]+ nodes"):
        config.resolve("wind", ENV, directory=tmp_path)
    with pytest.raises(ConfigError, match=r"--hp env_kwargs: its YAML aliases expand"):
        config.parse_overrides(["env_kwargs=" + "{" + ", ".join(bomb.strip().splitlines()) + "}"])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing was expanded (10^9 leaves would take gigabytes)
    (tmp_path / "recursive.yml").write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="recursive.yml: a YAML alias refers to a node that contains it"):
        config.load_yaml(tmp_path / "recursive.yml")
    (tmp_path / "fine.yml").write_text("base: &b {beta: 0.2}\ndefault:\n  <<: *b\n  eta: 1.0\n")
    assert config.load_yaml(tmp_path / "fine.yml")["default"] == {"beta": 0.2, "eta": 1.0}  # anchors still work
