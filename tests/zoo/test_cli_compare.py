"""``compare`` (parallel runs → table at query budgets + plots) and ``tournament``."""

from __future__ import annotations

import csv
from pathlib import Path

import gymnasium as gym
import matplotlib.image
import numpy as np
import pytest
import yaml
from zoo_helpers import ENV, read_csv, run_prefzoo

from prefzoo.zoo import compare, config, rundir, runner
from prefzoo.zoo.config import ConfigError

BUDGET = 1000  # 32 queries per iteration → 32 iterations per run


pytestmark = pytest.mark.xdist_group("test_cli_compare")  # one worker builds the module's `compared` once


@pytest.fixture(scope="module")
def compared(tiny_configs, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    result = compare.compare(["wind"], ENV, [0, 1, 2], out, workers=2, budget=BUDGET, directory=tiny_configs,
                             device="cpu", progress=False, overrides={"eval_freq": 2})
    return out, result


def independent_value_at(run_dir: str, metric: str, q: int) -> float:
    """The last progress.csv row with cost/queries <= q, read with the csv module only."""
    rows = [r for r in read_csv(Path(run_dir) / "progress.csv") if float(r["cost/queries"]) <= q]
    return float(rows[-1][metric])


def test_table_equals_the_run_csvs_at_the_budgets(compared):
    out, result = compared
    assert len(result["run_dirs"]) == 3 and all(Path(d).parent == out / "logs" / "wind" for d in result["run_dirs"])
    for run_dir in result["run_dirs"]:  # each run stopped at the first evaluation past the budget
        queries = [float(r["cost/queries"]) for r in read_csv(Path(run_dir) / "progress.csv")]
        assert queries[-1] >= BUDGET > queries[-2]
    with open(out / "table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["queries"]) for r in rows} == {250, 500, 1000}
    assert {r["metric"] for r in rows} >= {"game/exploitability", "game/kl_to_target"}
    markdown = (out / "table.md").read_text()
    for row in rows:
        values = [independent_value_at(d, row["metric"], int(row["queries"])) for d in result["run_dirs"]]
        assert float(row["mean"]) == pytest.approx(np.mean(values), rel=1e-12)
        assert float(row["se"]) == pytest.approx(np.std(values, ddof=1) / np.sqrt(3), rel=1e-9)
        assert int(row["n"]) == 3
        assert f"{float(row['mean']):.4g} ± {float(row['se']):.2g}" in markdown
    # and the plots, which read the same runs
    assert [p.name for p in result["plots"]] == ["vs_queries.png", "vs_wall_time.png"]
    for path in result["plots"]:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 600


def test_exact_mode_without_queries_is_reported(tiny_configs, tmp_path):
    with pytest.raises(ConfigError, match="no run made any oracle query"):
        compare.compare(["wind"], ENV, [0], tmp_path, workers=1, budget=100, directory=tiny_configs,
                        device="cpu", progress=False, overrides={"mode": "exact"})
    (run_dir,) = (tmp_path / "logs" / "wind").iterdir()  # stopped after 10 query-free iterations
    assert len(read_csv(run_dir / "progress.csv")) == runner.NO_QUERY_PATIENCE + 1


def test_tournament_matrix(tiny_configs, tmp_path):
    run_dirs = []
    for seed in (0, 1, 2):
        cfg = config.resolve("wind", ENV, seed, {"iterations": 20}, tiny_configs, "cpu")
        run_dirs.append(rundir.new_run_dir(tmp_path / "logs", "wind", ENV))
        runner.train(cfg, run_dirs[-1], progress=False, verbose=False)
    paths = [*map(str, run_dirs[:2]), str(run_dirs[2] / "checkpoints" / "iter_000020.pt")]
    proc = run_prefzoo(tiny_configs, tmp_path, "tournament", "--runs", *paths, "--out", "tour")
    assert "Nash (β=0)" in proc.stdout
    with open(tmp_path / "tour" / "tournament.csv", newline="") as f:
        table = list(csv.reader(f))
    names, matrix = table[0][1:], np.array([[float(v) for v in row[1:]] for row in table[1:]])
    assert names[-2:] == ["π_ref", "Nash (β=0)"] and len(names) == 5
    np.testing.assert_allclose(matrix + matrix.T, 1.0, atol=1e-12)
    assert matrix[-1].min() >= 0.5 - 1e-7  # nobody beats the von Neumann winner

    cfg = yaml.safe_load((Path(paths[0]) / "config.yml").read_text())
    game = gym.make(cfg["env_id"], **cfg["env_kwargs"]).unwrapped.game
    pi0, pi1 = (np.load(Path(p) / "policy.npy") for p in paths[:2])
    independent = float(np.einsum("x,xy,xyz,xz->", game.rho, pi0, game.P, pi1))
    assert matrix[0, 1] == pytest.approx(independent, abs=1e-12)
    vs_ref = float(np.einsum("x,xy,xyz,xz->", game.rho, pi1, game.P, game.ref))
    assert matrix[1, 3] == pytest.approx(vs_ref, abs=1e-12)
    pi2 = np.load(run_dirs[2] / "policy.npy")  # the last checkpoint is the final policy
    assert matrix[2, 0] == pytest.approx(float(np.einsum("x,xy,xyz,xz->", game.rho, pi2, game.P, pi0)), abs=1e-6)
    assert matplotlib.image.imread(tmp_path / "tour" / "tournament.png").ndim == 3


def test_tournament_on_a_game_without_exact_services_samples_the_checkpoints(tmp_path):
    """A token game of 19,608 sequences per prompt (a TokenOracle: no dense P). The players are the
    runs' checkpoints (a run directory's policy.npy is a table that cannot be sampled) and π_ref,
    compared on 1,024 contexts ± s.e.; WIND after 5 iterations beats π_ref by 3 s.e."""
    from prefzoo.zoo import tournament

    kwargs = {"n_contexts": 2, "vocab_size": 8, "max_length": 5, "ref_fit_steps": 10}
    hp = {"mode": "sample", "policy": "gru", "batch_size": 64, "grad_steps": 2}
    runs = []
    for iterations in (5, 1):
        cfg = config.RunConfig("wind", "prefzoo/TokenGame-v0", 0, iterations, iterations, iterations, kwargs, hp)
        runs.append(tmp_path / f"wind{iterations}")
        runner.train(cfg, runs[-1], progress=False, verbose=False)
    assert (runs[0] / "policy.npy").is_file()
    result = tournament.tournament([str(r) for r in runs], tmp_path / "tour", verbose=False)
    assert result["names"] == ["wind/s0@5", "wind/s0@1", "π_ref"]
    matrix = result["matrix"]
    se = np.loadtxt(tmp_path / "tour" / "tournament_se.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3))
    np.testing.assert_allclose(matrix + matrix.T, 1.0)
    assert matrix[0, 2] - 0.5 > 3 * se[0, 2], (matrix, se)  # measured 0.623 ± 0.010
    assert "on 1024 contexts" in (tmp_path / "tour" / "tournament.md").read_text()
