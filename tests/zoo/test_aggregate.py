"""Aggregates (IQM, stratified bootstrap, probability of improvement, performance profiles) against
direct numpy computations on synthetic scores."""

from __future__ import annotations

import csv

import matplotlib.image
import numpy as np
import pytest

from prefzoo.zoo import aggregate

GAMES = ("bt", "cyclic", "mixed")


def synthetic(shift: float, seed: int, runs: int = 8) -> dict[str, np.ndarray]:
    """Games on very different scales, so that pooling without strata would show."""
    rng = np.random.default_rng(seed)
    return {g: rng.gamma(2.0, 0.1, runs) + shift + 2.0 * i for i, g in enumerate(GAMES)}


def iqm_by_sorting(values: np.ndarray) -> float:
    """Mean of the middle 50 % (len divisible by 4)."""
    values = np.sort(values)
    quarter = len(values) // 4
    return float(values[quarter:len(values) - quarter].mean())


def numpy_bootstrap(samples: list[np.ndarray], statistic, stratified: bool, reps: int = 4000, seed: int = 123):
    """Percentile interval from an explicit resampling loop (per game, or pooled when not stratified)."""
    rng = np.random.default_rng(seed)
    pooled = np.concatenate(samples)
    values = []
    for _ in range(reps):
        if stratified:
            values.append(statistic([s[rng.integers(0, len(s), len(s))] for s in samples]))
        else:
            values.append(statistic([pooled[rng.integers(0, len(pooled), len(pooled))]]))
    return np.percentile(values, [2.5, 97.5])


def improvement_by_loops(x: dict, y: dict) -> float:
    per_game = []
    for g in x:
        wins = sum(1.0 if a < b else 0.5 if a == b else 0.0 for a in x[g] for b in y[g])
        per_game.append(wins / (len(x[g]) * len(y[g])))
    return float(np.mean(per_game))


def test_iqm_is_the_mean_of_the_middle_half():
    scores = synthetic(0.0, 0)
    pooled = np.concatenate(list(scores.values()))  # 24 runs
    point, low, high = aggregate.iqm_interval(scores)
    assert point == pytest.approx(iqm_by_sorting(pooled), rel=1e-12)
    assert low < point < high
    assert aggregate.iqm(np.array([100.0, 1.0, 2.0, 3.0, 4.0, -50.0, 2.5, 3.5])) == pytest.approx(2.75)


def test_stratified_interval_matches_a_numpy_resampling_loop():
    scores = synthetic(0.0, 1)
    _, low, high = aggregate.iqm_interval(scores)
    samples = list(scores.values())

    def stat(groups):
        return iqm_by_sorting(np.concatenate(groups))

    np_low, np_high = numpy_bootstrap(samples, stat, stratified=True)
    width = high - low
    assert low == pytest.approx(np_low, abs=0.1 * width) and high == pytest.approx(np_high, abs=0.1 * width)
    pooled_low, pooled_high = numpy_bootstrap(samples, stat, stratified=False)
    assert pooled_high - pooled_low > 3 * width  # without strata the game scales dominate the interval


def test_probability_of_improvement_matches_direct_loops():
    x, y = synthetic(0.0, 2), synthetic(0.05, 3)
    y["cyclic"][:2] = x["cyclic"][:2]  # ties count one half
    point, low, high = aggregate.probability_of_improvement(x, y)
    assert point == pytest.approx(improvement_by_loops(x, y), rel=1e-12)
    reverse = aggregate.probability_of_improvement(y, x)[0]
    assert point + reverse == pytest.approx(1.0, abs=1e-12)

    def stat(groups):
        return improvement_by_loops(dict(zip(GAMES, groups[:3], strict=True)),
                                    dict(zip(GAMES, groups[3:], strict=True)))

    np_low, np_high = numpy_bootstrap([*x.values(), *y.values()], stat, stratified=True, reps=1500)
    assert low == pytest.approx(np_low, abs=0.03) and high == pytest.approx(np_high, abs=0.03)
    assert aggregate.probability_of_improvement(x, {k: v + 10 for k, v in x.items()})[:3] == (1.0, 1.0, 1.0)


def test_performance_profile_counts_runs_below_tau():
    scores = synthetic(0.0, 4)
    taus = np.array([0.0, 0.2, 2.3, 4.15, 10.0])
    frac, low, high = aggregate.performance_profile(scores, taus)
    pooled = np.concatenate(list(scores.values()))
    np.testing.assert_allclose(frac, [(pooled <= t).mean() for t in taus], rtol=0, atol=1e-15)
    assert np.all(low <= frac + 1e-12) and np.all(frac <= high + 1e-12)
    assert (low[0], high[0], low[-1], high[-1]) == (0.0, 0.0, 1.0, 1.0)


def test_one_run_per_game_gives_a_point_interval_and_bad_input_is_named():
    assert aggregate.iqm_interval({"a": np.array([0.3]), "b": np.array([0.5])}) == (0.4, 0.4, 0.4)
    with pytest.raises(ValueError, match="iqm: every game needs a non-empty 1-D array of finite scores"):
        aggregate.iqm_interval({"a": np.array([np.nan, 1.0])})
    with pytest.raises(ValueError, match="share no game"):
        aggregate.probability_of_improvement({"a": np.ones(2)}, {"b": np.ones(2)})


def test_written_tables_and_plots(tmp_path):
    rows = [{"algorithm": algo, "game": g, "seed": s, "score": v}
            for algo, shift, seed in (("good", 0.0, 5), ("bad", 0.5, 6))
            for g, values in synthetic(shift, seed, runs=4).items() for s, v in enumerate(values)]
    result = aggregate.write_aggregates(rows, tmp_path, title="synthetic")
    with open(result["csv"], newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["algorithm", "iqm", "ci_low", "ci_high"]
    assert [r["algorithm"] for r in table] == ["good", "bad"]
    for r in table:
        scores = np.array([row["score"] for row in rows if row["algorithm"] == r["algorithm"]])
        assert float(r["iqm"]) == pytest.approx(iqm_by_sorting(scores), rel=1e-5)
        assert float(r["ci_low"]) <= float(r["iqm"]) <= float(r["ci_high"])
    markdown = result["md"].read_text()
    assert "| good | 12 |" in markdown and "Probability of improvement" in markdown
    assert [p.name for p in result["pngs"]] == ["aggregate_iqm.png", "performance_profile.png", "improvement.png"]
    assert all(matplotlib.image.imread(p).ndim == 3 for p in result["pngs"])


def test_against_rliable_where_it_installs():
    """Optional cross-check: rliable's own IQM and probability of improvement (higher is better there)."""
    rliable = pytest.importorskip("rliable.metrics", reason="rliable is not installed (its pins conflict with "
                                  "current pandas; the numpy checks above are the reference)")
    x, y = synthetic(0.0, 7), synthetic(0.1, 8)
    x_matrix, y_matrix = (np.stack([d[g] for g in GAMES], axis=1) for d in (x, y))  # runs × games
    assert aggregate.iqm_interval(x)[0] == pytest.approx(rliable.aggregate_iqm(x_matrix), rel=1e-12)
    theirs = rliable.probability_of_improvement(-x_matrix, -y_matrix)  # their "higher is better"
    assert aggregate.probability_of_improvement(x, y)[0] == pytest.approx(theirs, rel=1e-12)


def test_a_game_left_with_one_run_is_resampled_degenerately_with_a_warning(tmp_path):
    """A game keeps one finite run while the others keep several: no crash, a warning, and the
    interval of the explicit resampling loop in which that run enters every resample."""
    scores = synthetic(0.0, 3)
    scores["mixed"] = scores["mixed"][:1]
    with pytest.warns(UserWarning, match="1 of 3 games keep a single run"):
        point, low, high = aggregate.iqm_interval(scores)
    np_low, np_high = numpy_bootstrap(list(scores.values()), lambda g: float(aggregate.iqm(np.concatenate(g))),
                                      stratified=True)
    width = high - low
    assert low < point < high and width > 0
    assert low == pytest.approx(np_low, abs=0.1 * width) and high == pytest.approx(np_high, abs=0.1 * width)
    rows = [{"algorithm": "a", "game": g, "seed": s, "score": v} for g, values in scores.items()
            for s, v in enumerate(values)]
    with pytest.warns(UserWarning, match="single run"):
        assert aggregate.write_aggregates(rows, tmp_path)["csv"].is_file()
