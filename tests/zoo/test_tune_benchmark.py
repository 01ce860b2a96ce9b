"""``prefzoo tune`` (a real tiny Optuna study) and ``prefzoo benchmark`` (the suite's scores and
leaderboard against the runs' own progress.csv)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from zoo_helpers import ENV, TINY, read_csv

from prefzoo.envs import metrics
from prefzoo.zoo import benchmark, config, rundir, tune
from prefzoo.zoo.config import ConfigError

pytest.importorskip("optuna", reason="optuna is not installed (pip install 'prefzoo[tune]')")

OTHER = "prefzoo/PrefBandit-v0"
TINY_SPPO = "default: {mode: sample, eta: 1.0, k: 3, lr: 0.1, batch_size: 32, grad_steps: 5, save_freq: 10, " \
            "env_kwargs: {n_contexts: 3, n_actions: 3}}\n"
PACKAGED_SEARCH = Path(config.config_dir(None)) / "search"


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("configs")
    (folder / "wind.yml").write_text(TINY)
    (folder / "sppo.yml").write_text(TINY_SPPO)
    shutil.copytree(PACKAGED_SEARCH, folder / "search")
    return folder


@pytest.fixture(scope="module")
def tuned(configs, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned")
    first = tune.tune("wind", ENV, out, trials=2, budget=320, n_seeds=2, directory=configs, device="cpu")
    resumed = tune.tune("wind", ENV, out, trials=3, budget=320, n_seeds=2, directory=configs, device="cpu")
    tune.tune("sppo", ENV, out, trials=3, budget=320, n_seeds=2, directory=configs, device="cpu")
    return out, first, resumed


def test_tune_objective_resume_and_the_written_config(tuned, configs):
    out, first, resumed = tuned
    study = resumed["study"]
    assert len(study.trials) == 3 and first["trials"] == 2  # the interrupted study went on, not over
    assert (out / "wind-prefzoo-PrefBandit-Cyclic-v0.journal").is_file()
    assert resumed["objective"] == metrics.KL_TO_TARGET
    space = yaml.safe_load((PACKAGED_SEARCH / "wind.yml").read_text())
    for trial in study.trials:
        assert set(trial.params) == set(space)
        assert space["eta"]["low"] <= trial.params["eta"] <= space["eta"]["high"]
    # the objective of a completed trial = the mean KL at the budget over the tuning seeds, from the runs' CSVs
    trial = next(t for t in study.trials if t.value is not None)
    values = []
    for seed in (1000, 1001):
        rows = read_csv(out / "trials" / "wind" / rundir.env_dirname(ENV) / f"trial_{trial.number}_seed_{seed}"
                        / "progress.csv")
        values.append(float([r for r in rows if float(r[metrics.QUERIES]) <= 320][-1][metrics.KL_TO_TARGET]))
    assert trial.value == pytest.approx(np.mean(values), rel=1e-12)

    best = study.best_trial
    cfg = config.resolve("wind", ENV, 0, {}, out, "cpu")  # what `prefzoo train --config-dir out` reads
    packaged = config.resolve("wind", ENV, 0, {}, configs, "cpu")
    assert {k: cfg.hyperparams[k] for k in best.params} == best.params
    assert cfg.env_kwargs == packaged.env_kwargs and cfg.hyperparams["beta"] == packaged.hyperparams["beta"]
    assert yaml.safe_load((out / "tuning.yml").read_text())["wind"][ENV]["trials"] == 3
    assert sppo_objective_is_exploitability(out)


def test_rerunning_a_finished_study_reports_it_and_runs_nothing(tuned, configs):
    out, _, resumed = tuned
    again = tune.tune("wind", ENV, out, trials=3, budget=320, n_seeds=2, directory=configs, device="cpu")
    assert again["trials"] == 3 and len(again["study"].trials) == 3
    assert again["best_params"] == resumed["best_params"] and again["config"].is_file()


def sppo_objective_is_exploitability(out: Path) -> bool:
    return yaml.safe_load((out / "tuning.yml").read_text())["sppo"][ENV]["objective"] == metrics.EXPLOITABILITY


def test_tuned_note_requires_equal_effort(tuned, configs, tmp_path):
    out, *_ = tuned
    note = tune.tuned_note(out, ["wind", "sppo"], [ENV])
    assert "the same 3 trials × 320-query budget for every algorithm" in note
    with pytest.raises(ConfigError, match="not tuned: wind on prefzoo/PrefBandit-v0"):
        tune.tuned_note(out, ["wind"], [OTHER])
    unequal = tmp_path / "unequal"
    shutil.copytree(out, unequal)
    meta = yaml.safe_load((unequal / "tuning.yml").read_text())
    meta["sppo"][ENV]["trials"] = 2
    (unequal / "tuning.yml").write_text(yaml.safe_dump(meta))
    with pytest.raises(ConfigError, match="unequal tuning effort"):
        tune.tuned_note(unequal, ["wind", "sppo"], [ENV])


def test_bad_search_space_is_named(tmp_path):
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "wind.yml").write_text("eta: {type: float, low: 2.0, high: 1.0}\n")
    with pytest.raises(ConfigError, match="eta: expected"):
        tune.search_space("wind", tmp_path)
    with pytest.raises(ConfigError, match="no search space for sppo"):
        tune.search_space("sppo", tmp_path)
    for bad, match in (({"workers": 0}, "--workers must be a positive integer, got 0"),
                       ({"backend": "slurm"}, "unknown backend 'slurm'")):
        with pytest.raises(ConfigError, match=match):
            tune.tune("wind", ENV, tmp_path / "out", trials=1, budget=320, **bad)
        assert not (tmp_path / "out").exists()  # refused before anything was written


def test_benchmark_scores_and_leaderboard(tuned, configs, tmp_path, monkeypatch):
    out_tuned, *_ = tuned
    monkeypatch.setenv(config.CONFIG_DIR_ENV, str(configs))  # the untuned pairs read the tiny configs
    out = tmp_path / "bench"
    result = benchmark.benchmark(out, algos=["wind", "sppo"], games=[ENV, OTHER], seeds=[0, 1], budget=640,
                                 workers=2, tuned=out_tuned, device="cpu", progress=False)
    scores = read_csv(out / "scores.csv")
    assert list(scores[0]) == ["algorithm", "game", "seed", "score"] and len(scores) == 8
    run_dirs = [Path(o.result["run_dir"]) for o in result["outcomes"]]
    assert len(set(run_dirs)) == 8
    for cfg, outcome in zip(result["configs"], result["outcomes"], strict=True):
        run_dir = Path(outcome.result["run_dir"])
        assert config.RunConfig.from_dict(yaml.safe_load((run_dir / "config.yml").read_text())) == cfg  # its own run
        rows = read_csv(run_dir / "progress.csv")
        at_budget = [r for r in rows if float(r[metrics.QUERIES]) <= 640][-1]
        expected = float(at_budget[metrics.EXPLOITABILITY]) / float(rows[0][metrics.EXPLOITABILITY])
        (row,) = [r for r in scores if (r["algorithm"], r["game"], int(r["seed"])) == (cfg.algo, cfg.env_id, cfg.seed)]
        assert float(row["score"]) == pytest.approx(expected, rel=1e-9)
        source = out_tuned if cfg.env_id == ENV else configs  # tuned where there is an entry for the game
        assert cfg.hyperparams["lr"] == config.resolve(cfg.algo, cfg.env_id, 0, {}, source, "cpu").hyperparams["lr"]
    aggregate = read_csv(out / "aggregate.csv")
    assert list(aggregate[0]) == ["algorithm", "iqm", "ci_low", "ci_high"]
    for row in aggregate:
        mine = np.sort([float(r["score"]) for r in scores if r["algorithm"] == row["algorithm"]])
        assert float(row["iqm"]) == pytest.approx(mine[1:3].mean(), rel=1e-5)  # 4 runs: the middle two
    per_game = (out / "per_game.md").read_text()
    assert "Tuned configs from" in per_game and "2 of 4 algorithm-game pairs" in per_game
    assert (out / "games" / rundir.env_dirname(ENV) / "table.csv").is_file()
    assert {p.name for p in result["aggregate"]["pngs"]} == {"aggregate_iqm.png", "performance_profile.png",
                                                              "improvement.png"}


def test_parallel_trials_run_in_two_workers_against_one_journal(configs, tmp_path):
    """``workers=2``: the 4 missing trials run in two spawned processes that take the next trial until
    the study holds 4 (each trial records its worker), all in the one journal, and a resume with more
    trials adds only the missing ones."""
    result = tune.tune("wind", ENV, tmp_path, trials=4, budget=320, n_seeds=1, directory=configs, device="cpu",
                       workers=2)
    trials = result["study"].trials
    workers = [t.user_attrs["worker"] for t in trials]
    assert len(trials) == 4 and 1 <= len(set(workers)) <= 2  # (a worker that starts late may find none left)
    assert all(not w.endswith(f":{os.getpid()}") for w in workers)
    assert tune.tune("wind", ENV, tmp_path, trials=5, budget=320, n_seeds=1, directory=configs, device="cpu",
                     workers=2)["trials"] == 5


def test_a_study_refuses_other_settings_and_concurrent_tunes_run_only_the_trials_asked(configs, tmp_path):
    import subprocess
    import sys

    import optuna

    out = tmp_path / "tuned"
    tune.tune("wind", ENV, out, trials=1, budget=64, n_seeds=1, directory=configs, device="cpu")
    with pytest.raises(ConfigError, match=r"was run with other budget \(budget: 64\); use another --out"):
        tune.tune("wind", ENV, out, trials=2, budget=128, n_seeds=1, directory=configs, device="cpu")
    command = [sys.executable, "-m", "prefzoo", "tune", "--algo", "wind", "--env", ENV, "--trials", "4",
               "--budget", "64", "--tuning-seeds", "1", "--out", str(out), "--config-dir", str(configs)]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in runs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    study = tune.open_study(str(out / f"wind-{rundir.env_dirname(ENV)}.journal"), f"wind-{ENV}", 0)
    states = [t.state for t in study.get_trials()]
    assert len(states) == 4 and set(states) <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    assert yaml.safe_load((out / "tuning.yml").read_text())["wind"][ENV]["trials"] == 4


def test_every_preference_algorithm_has_a_search_space_whose_points_build_it():
    """Equal-effort tuning needs a search space per algorithm: every algorithm that plays the bandit
    games (SB3's PPO aside) has one, and points drawn from it build the algorithm."""
    import optuna

    import prefzoo
    from prefzoo.algorithms.base import plays

    game = prefzoo.make_game("cyclic")
    names = sorted(name for name, cls in prefzoo.ALGORITHMS.items() if plays(cls, game) and name != "ppo")
    assert set(benchmark.DEFAULT_ALGOS) <= set(names)
    for name in names:
        space = tune.search_space(name)
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(3):
            trial = study.ask()
            cfg = config.resolve(name, ENV, 0, tune.suggest(trial, space))
            prefzoo.make_algo(name, ENV, **cfg.hyperparams)
            study.tell(trial, 0.0)
