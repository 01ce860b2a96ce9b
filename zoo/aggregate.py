"""Aggregates over games × seeds that hold up: the protocol of Agarwal et al. (2021), "Deep RL at
the Edge of the Statistical Precipice" (arXiv:2108.13264), computed with scipy instead of ``rliable``.

Scores are normalized per-run scores where **lower is better** (``benchmark``: exploitability
relative to π_ref's on the same game, so 1 = no better than π_ref and 0 = a Nash equilibrium).

* **IQM**: the interquartile mean of all runs of an algorithm pooled over games (the mean of the
  middle 50 %, ``scipy.stats.trim_mean(·, 0.25)``); robust to outlier runs, less noisy than the median.
* **Stratified bootstrap**: runs are resampled with replacement *within each game* (each game keeps
  its number of runs), as ``scipy.stats.bootstrap`` does with one sample per game; percentile
  intervals, as rliable.
* **Probability of improvement** P(X < Y): per game, the Mann-Whitney probability that a run of X
  scores below (better than) a run of Y, ties counting ½, averaged over games; its interval
  resamples X's and Y's runs within each game.
* **Performance profile**: the fraction of runs (pooled over games) with score ≤ τ, for τ on a grid.
"""

from __future__ import annotations

import csv
import itertools
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import stats

TRIM = 0.25  # the interquartile mean trims a quarter at each end
CONFIDENCE = 0.95
N_RESAMPLES = 50_000  # rliable's; 2,000 moved interval ends by up to 2 % of the width
SEED = 0

ByGame = dict[str, np.ndarray]  # game → the scores of one algorithm's runs (seeds) on it


def iqm(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean along ``axis``."""
    return stats.trim_mean(scores, TRIM, axis=axis)


def _check(by_game: ByGame, name: str) -> list[np.ndarray]:
    if not by_game:
        raise ValueError(f"{name}: no games with scores")
    samples = [np.asarray(v, dtype=float) for v in by_game.values()]
    if any(s.ndim != 1 or len(s) == 0 or not np.isfinite(s).all() for s in samples):
        raise ValueError(f"{name}: every game needs a non-empty 1-D array of finite scores")
    return samples


def stratified_bootstrap(samples: list[np.ndarray], statistic: Callable[..., np.ndarray], *,
                         seed: int = SEED, n_resamples: int = N_RESAMPLES) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of ``statistic(*samples, axis=-1)`` resampling each sample (game)
    on its own. A game with a single run is resampled degenerately (as rliable does: that run
    enters every resample), with a warning; when every game has one run the interval is the point."""
    point = np.asarray(statistic(*samples, axis=-1), dtype=float)
    single = [len(s) == 1 for s in samples]
    if all(single):
        return point.copy(), point.copy()
    if any(single):
        warnings.warn(f"{sum(single)} of {len(samples)} games keep a single run: resampled degenerately "
                      "(the interval does not reflect their spread)", stacklevel=2)

    def with_single_runs(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        varying = iter(resampled)
        batch = resampled[0].shape[:-1] + (1,)
        return statistic(*(np.broadcast_to(s, batch) if one else next(varying)
                           for s, one in zip(samples, single, strict=True)), axis=axis)

    result = stats.bootstrap(tuple(s for s, one in zip(samples, single, strict=True) if not one), with_single_runs,
                             vectorized=True, paired=False, axis=-1, confidence_level=CONFIDENCE,
                             n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
    return np.asarray(result.confidence_interval.low), np.asarray(result.confidence_interval.high)


def _pooled_iqm(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return iqm(np.concatenate(samples, axis=axis), axis=axis)


def iqm_interval(by_game: ByGame, seed: int = SEED) -> tuple[float, float, float]:
    """IQM of all runs pooled over games, with its stratified-bootstrap interval."""
    samples = _check(by_game, "iqm")
    low, high = stratified_bootstrap(samples, _pooled_iqm, seed=seed)
    return float(_pooled_iqm(*samples)), float(low), float(high)


def _improvement(n_games: int) -> Callable[..., np.ndarray]:
    """statistic(x_1..x_G, y_1..y_G) = mean over games of P(run of x < run of y), ties ½."""
    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        total = 0.0
        for x, y in zip(samples[:n_games], samples[n_games:], strict=True):
            x, y = np.moveaxis(x, axis, -1)[..., :, None], np.moveaxis(y, axis, -1)[..., None, :]
            total = total + ((x < y) + 0.5 * (x == y)).mean(axis=(-2, -1))
        return total / n_games
    return statistic


def probability_of_improvement(x: ByGame, y: ByGame, seed: int = SEED) -> tuple[float, float, float]:
    """P(X better than Y) (lower score = better) over the games both have, with its interval."""
    games = [g for g in x if g in y]
    if not games:
        raise ValueError("probability_of_improvement: the two algorithms share no game")
    samples = _check({g: x[g] for g in games}, "x") + _check({g: y[g] for g in games}, "y")
    statistic = _improvement(len(games))
    low, high = stratified_bootstrap(samples, statistic, seed=seed)
    return float(statistic(*samples)), float(low), float(high)


def performance_profile(by_game: ByGame, taus: np.ndarray, seed: int = SEED) -> tuple[np.ndarray, ...]:
    """Fraction of runs with score ≤ τ for each τ (pooled over games), with pointwise intervals."""
    samples = _check(by_game, "performance_profile")
    taus = np.asarray(taus, dtype=float)

    def statistic(*s: np.ndarray, axis: int = -1) -> np.ndarray:
        pooled = np.moveaxis(np.concatenate(s, axis=axis), axis, -1)
        return np.moveaxis((pooled[..., None, :] <= taus[:, None]).mean(axis=-1), -1, 0)

    low, high = stratified_bootstrap(samples, statistic, seed=seed)
    return statistic(*samples), low, high


# ---------------------------------------------------------------------- tables and plots
def by_algorithm(rows: list[dict]) -> dict[str, ByGame]:
    """``[{algorithm, game, seed, score}]`` → ``{algorithm: {game: scores in seed order}}``."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for row in rows:
        out.setdefault(row["algorithm"], {}).setdefault(row["game"], []).append((int(row["seed"]), float(row["score"])))
    return {a: {g: np.array([s for _, s in sorted(v)]) for g, v in games.items()} for a, games in out.items()}


def write_aggregates(rows: list[dict], out: str | Path, title: str = "benchmark") -> dict:
    """``aggregate.csv`` (algorithm, iqm, ci_low, ci_high), ``aggregate.md`` (IQM, probabilities
    of improvement) and ``aggregate_iqm.png``, ``performance_profile.png``, ``improvement.png``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = by_algorithm(rows)
    iqms = {a: iqm_interval(data[a]) for a in data}
    algos = sorted(data, key=lambda a: iqms[a][0])  # best (lowest) first
    with open(out / "aggregate.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["algorithm", "iqm", "ci_low", "ci_high"])
        writer.writerows([a, *(f"{v:.6g}" for v in iqms[a])] for a in algos)
    pairs = {(a, b): probability_of_improvement(data[a], data[b]) for a, b in itertools.permutations(algos, 2)}
    n_runs = {a: sum(len(v) for v in data[a].values()) for a in algos}
    games = sorted({g for a in algos for g in data[a]})
    pct = f"{CONFIDENCE:.0%}"
    lines = [f"## {title}: aggregates over {len(games)} games (lower is better)", "",
             "Normalized score = the distance of the game's headline metric to its ideal at the budget, over "
             f"π_ref's on the same game. IQM = mean of the middle 50 % of all runs; {pct} percentile "
             f"intervals of the stratified bootstrap ({N_RESAMPLES:,} resamples of the seeds within each game; "
             "Agarwal et al. 2021).", "",
             "| algorithm | runs | IQM | " + pct + " interval |", "|---|---|---|---|"]
    lines += [f"| {a} | {n_runs[a]} | {iqms[a][0]:.4g} | [{iqms[a][1]:.4g}, {iqms[a][2]:.4g}] |" for a in algos]
    lines += ["", f"### Probability of improvement P(row better than column), {pct} interval", "",
              "| | " + " | ".join(algos) + " |", "|---|" + "---|" * len(algos)]
    for a in algos:
        cells = ["—" if a == b else "{:.2f} [{:.2f}, {:.2f}]".format(*pairs[a, b]) for b in algos]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    (out / "aggregate.md").write_text("\n".join(lines) + "\n")
    pngs = _plots(data, algos, iqms, pairs, out, title)
    return {"csv": out / "aggregate.csv", "md": out / "aggregate.md", "pngs": pngs, "iqm": iqms,
            "improvement": pairs, "order": algos}


def _plots(data, algos, iqms, pairs, out: Path, title: str) -> list[Path]:
    from prefzoo.zoo.plots import plt, save_figure  # pyplot on the Agg backend

    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    paths = []
    fig, ax = plt.subplots(figsize=(6.4, 1.4 + 0.45 * len(algos)))
    for i, a in enumerate(algos):
        point, low, high = iqms[a]
        ax.plot([low, high], [i, i], color=colors[i % len(colors)], lw=6, alpha=0.5, solid_capstyle="butt")
        ax.plot([point], [i], "|", color="black", ms=14)
    ax.set_yticks(range(len(algos)), algos)
    ax.invert_yaxis()
    ax.set_xlabel("IQM of normalized exploitability (lower is better)")
    ax.set_title(f"{title}\nIQM, {CONFIDENCE:.0%} stratified-bootstrap interval", fontsize=10)
    ax.grid(True, axis="x", alpha=0.3)
    paths.append(save_figure(fig, out / "aggregate_iqm.png"))

    all_scores = np.concatenate([s for a in algos for s in data[a].values()])
    taus = np.linspace(0.0, max(1.0, float(all_scores.max())) * 1.02, 101)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, a in enumerate(algos):
        frac, low, high = performance_profile(data[a], taus)
        ax.plot(taus, frac, color=colors[i % len(colors)], label=a, lw=1.8)
        ax.fill_between(taus, low, high, color=colors[i % len(colors)], alpha=0.2, lw=0)
    ax.axvline(1.0, color="gray", ls=":", lw=1)
    ax.set_xlabel("τ (normalized exploitability; 1 = π_ref)")
    ax.set_ylabel("fraction of runs with score ≤ τ")
    ax.set_title(f"{title}\nperformance profiles, {CONFIDENCE:.0%} pointwise intervals", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    paths.append(save_figure(fig, out / "performance_profile.png"))

    if len(algos) > 1:
        items = [((a, b), pairs[a, b]) for a, b in itertools.combinations(algos, 2)]  # better-ranked first
        fig, ax = plt.subplots(figsize=(6.4, 1.4 + 0.35 * len(items)))
        for i, ((a, _), (point, low, high)) in enumerate(items):
            ax.plot([low, high], [i, i], color=colors[algos.index(a) % len(colors)], lw=6, alpha=0.5,
                    solid_capstyle="butt")
            ax.plot([point], [i], "|", color="black", ms=12)
        ax.set_yticks(range(len(items)), [f"P({a} < {b})" for (a, b), _ in items])
        ax.invert_yaxis()
        ax.axvline(0.5, color="gray", ls=":", lw=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel("probability of improvement")
        ax.set_title(f"{title}\nprobability of improvement, {CONFIDENCE:.0%} interval", fontsize=10)
        paths.append(save_figure(fig, out / "improvement.png"))
    return paths
