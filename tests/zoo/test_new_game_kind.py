"""A new kind of game, written here as a user would write one: short answers to prompts judged by a
Python callable, responses listed. The game is this module's one class and one ``register_game``
line; nothing in ``envs/``, ``algorithms/`` or ``zoo/`` knows it. Everything the command line offers
works on it: train, ``--max-calls`` (stops with a checkpoint, resumes), compare (its table holds the
estimated win rate), tournament, tune, RUCB / Double TS and estimate-then-solve.

The spawned workers of ``compare`` import this module (the game class's, read from the parent's
registry: :func:`~prefzoo.envs.registering_modules`), and with it the registration, before they
make the env.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env
from scipy.special import expit

from prefzoo.envs import game_class, register_game
from prefzoo.envs.oracle import PreferenceOracle, declarations

PROMPTS = ("can you help?", "will you come?")
ANSWERS = ("no", "ok", "yes", "sure", "maybe", "gladly")


def longer_wins(prompt: str, a: str, b: str) -> float:
    """P(a ≻ b): the longer answer wins, more surely to a request for help."""
    return float(expit((len(a) - len(b)) * (1.0 if "help" in prompt else 0.5)))


class ShortAnswers(PreferenceOracle):
    """Each prompt answered by one of a few short strings; P(a ≻ b | prompt) is a Python callable's."""

    responses, payoff, exact, listed = "indexed", "preference", False, True

    def __init__(self, judge=longer_wins, seed: int = 0, max_queries: int | None = None):
        self.judge = judge
        ref = np.full((len(PROMPTS), len(ANSWERS)), 1 / len(ANSWERS))
        super().__init__(len(PROMPTS), ref=ref, seed=seed, max_queries=max_queries)

    def preference(self, x, y, y2):
        flat = zip(x.ravel(), y.ravel(), y2.ravel(), strict=True)
        return np.array([self.judge(PROMPTS[i], ANSWERS[a], ANSWERS[b]) for i, a, b in flat]).reshape(x.shape)


register_game("strings/Judge-v0", game=f"{__name__}:ShortAnswers")  # (__name__: this module's import name)
# ---------------------------------------------------------------- the game ends here; the checks follow

ENV = "strings/Judge-v0"
CONFIGS = {  # small settings per algorithm (a config directory, as `--config-dir` reads it)
    "wind": {"mode": "sample", "beta": 0.1, "eta": 0.5, "batch_size": 32, "iterations": 20, "eval_freq": 2,
             "save_freq": 5},
    "online_dpo": {"batch_size": 32, "mode": "sample", "iterations": 20, "eval_freq": 2, "save_freq": 5},
    "rucb": {"mode": "sample", "batch_size": 32, "iterations": 20, "eval_freq": 2, "save_freq": 5},
    "double_ts": {"mode": "sample", "batch_size": 32, "iterations": 20, "eval_freq": 2, "save_freq": 5},
    "estimate_then_solve": {"mode": "sample", "batch_size": 32, "iterations": 20, "eval_freq": 2, "save_freq": 5},
}


def exact_win_rate(pi: np.ndarray) -> float:
    """Σ_x ρ(x) Σ_{y,y'} π(y|x) π_ref(y'|x) P(y ≻ y'|x), with P listed here from the judge."""
    P = np.array([[[longer_wins(p, a, b) for b in ANSWERS] for a in ANSWERS] for p in PROMPTS])
    return float(np.einsum("xi,xij,xj->", pi, P, np.full_like(pi, 1 / len(ANSWERS))) / len(PROMPTS))


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("configs")
    for algo, entry in CONFIGS.items():
        (directory / f"{algo}.yml").write_text(yaml.safe_dump({ENV: entry}))
    return directory


def test_the_env_passes_gymnasiums_checker_and_the_game_declares_what_it_is():
    env = gym.make(ENV)
    check_env(env.unwrapped)
    game = env.unwrapped.game
    assert isinstance(game, ShortAnswers) and game_class(ENV) is ShortAnswers
    assert declarations(ShortAnswers) == {"responses": "indexed", "payoff": "preference", "exact": False,
                                          "listed": True}


def train(config_dir, *args):
    from prefzoo.zoo import cli

    cli.main(["train", "--env", ENV, "--config-dir", str(config_dir), "--no-progress", *args])


@pytest.mark.parametrize("algo", ["wind", "rucb", "double_ts", "estimate_then_solve"])
def test_train_reports_the_estimated_win_rate_and_exports_the_table(algo, config_dir, tmp_path, monkeypatch):
    from prefzoo.zoo import rundir

    monkeypatch.chdir(tmp_path)
    train(config_dir, "--algo", algo)
    run = rundir.latest_run_dir(tmp_path / "logs", algo, ENV)
    arrays = rundir.progress_arrays(run)
    pi = np.load(run / "policy.npy")
    assert rundir.finished(run) and pi.shape == (2, 6)
    final, se = arrays["est/win_rate_vs_ref"][-1], arrays["est/win_rate_vs_ref_se"][-1]
    assert abs(final - exact_win_rate(pi)) < 5 * se  # the estimate agrees with the judge's own P
    assert final > 0.6 and arrays["cost/queries"][-1] == 20 * 32  # longer answers learned
    assert "exploitability" not in arrays  # no exact services: no exact metric


def test_max_calls_stops_with_a_checkpoint_and_a_resume_raises_it(config_dir, tmp_path, monkeypatch, capsys):
    from prefzoo.zoo import rundir, runner

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        train(config_dir, "--algo", "wind", "--max-calls", "200")
    assert stopped.value.code == 3  # the budget was spent before the run's end
    assert f"{runner.BUDGET_SPENT} at iteration 6" in capsys.readouterr().out  # 7 × 32 > 200
    run = rundir.latest_run_dir(tmp_path / "logs", "wind", ENV)
    assert max(rundir.checkpoints(run)) == 6
    train(config_dir, "--resume", str(run), "--max-calls", "1000")
    assert "done at iteration 20" in capsys.readouterr().out and rundir.finished(run)
    assert rundir.progress_arrays(run)["cost/queries"][-1] == 20 * 32  # the whole run, across the resume


def test_compare_tournament_tune_and_benchmark(config_dir, tmp_path):
    from prefzoo.zoo import benchmark, compare, tournament, tune

    pytest.importorskip("optuna")
    result = compare.compare(["wind", "online_dpo"], ENV, [0, 1], tmp_path / "compare", budget=320,
                             directory=config_dir, device="cpu", progress=False, workers=2)  # spawned workers
    table = (tmp_path / "compare" / "table.csv").read_text()
    assert table.splitlines()[1].startswith("wind,est/win_rate_vs_ref,")  # the game's headline first
    runs = [o.result["run_dir"] for o in result["outcomes"]]
    matrix = tournament.tournament(runs[:2], tmp_path / "tournament", verbose=False)["matrix"]
    assert matrix.shape == (3, 3) and np.allclose(matrix + matrix.T, 1.0)  # two runs and π_ref
    best = tune.tune("wind", ENV, tmp_path / "tuned", trials=2, budget=128, n_seeds=1, overrides={"batch_size": 32})
    assert best["objective"] == "|est/win_rate_vs_ref - 1|"  # no exact target: the headline's distance to 1
    entry = yaml.safe_load((tmp_path / "tuned" / "wind.yml").read_text())[ENV]
    assert best["best_params"] and entry.items() >= best["best_params"].items()
    benchmark.benchmark(tmp_path / "bench", algos=["rucb"], games=[ENV], seeds=[0, 1], budget=320, workers=1,
                        progress=False)  # scored by the headline: (1 − win rate at the budget)/(1 − ½)
    scores = [float(row.split(",")[-1]) for row in (tmp_path / "bench" / "scores.csv").read_text().splitlines()[1:]]
    assert len(scores) == 2 and all(0 < s < 1 for s in scores) and (tmp_path / "bench" / "aggregate.csv").is_file()
