"""The runner over every registered algorithm: a short run logs the §6 metrics, and resuming from
a mid-run checkpoint gives the same progress.csv as running straight through."""

from __future__ import annotations

import pytest
from zoo_helpers import ENV, read_csv, without_wall_time

import prefzoo
from prefzoo.algorithms.base import plays
from prefzoo.zoo import config, rundir, runner

TINY_GAME = {"n_contexts": 3, "n_actions": 3}


def tiny(algo: str, tmp_path, iterations: int):
    """Constructor defaults (an empty config folder), sample mode where supported, small batches."""
    names = config.hyperparameter_names(algo) or []
    overrides = {"iterations": iterations, "save_freq": 2, "env_kwargs": TINY_GAME}
    if "mode" in names and "sample" in getattr(prefzoo.ALGORITHMS[algo], "supported_modes", ()):
        overrides["mode"] = "sample"
    overrides.update({k: v for k, v in (("batch_size", 16), ("grad_steps", 2)) if k in names})
    empty = tmp_path / "no_configs"
    empty.mkdir(exist_ok=True)
    return config.resolve(algo, ENV, 0, overrides, empty, "cpu")


# ENV is a PrefBandit: algorithms that do not play bandit games (aqp_alft) are covered in
# tests/algorithms/test_aqp_alft.py
@pytest.mark.parametrize("algo", sorted(name for name, cls in prefzoo.ALGORITHMS.items()
                                        if plays(cls, prefzoo.make_game("cyclic"))))
def test_resume_equals_straight_run(algo, tmp_path):
    straight = rundir.new_run_dir(tmp_path / "a", algo, ENV)
    result = runner.train(tiny(algo, tmp_path, 4), straight, progress=False, verbose=False)
    assert result["status"] == "done" and result["iteration"] == 4
    rows = read_csv(straight / "progress.csv")
    assert [int(r["time/iterations"]) for r in rows] == [0, 1, 2, 3, 4]
    assert {"game/exploitability", "cost/queries", "cost/samples", "time/wall_s"} <= set(rows[0])
    assert all(key.split("/")[0] in ("game", "alft", "duel", "cost", "time", "train") for key in rows[0])

    halted = rundir.new_run_dir(tmp_path / "b", algo, ENV)
    runner.train(tiny(algo, tmp_path, 2), halted, progress=False, verbose=False)
    resumed = tiny(algo, tmp_path, 4)
    runner.train(resumed, halted, resume=True, progress=False, verbose=False)
    assert without_wall_time(read_csv(halted / "progress.csv")) == without_wall_time(rows)
