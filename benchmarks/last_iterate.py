"""The last iterate of the Nash-learning algorithms on intransitive games, against exact ground truth.

On ``PrefBandit-Cyclic-v0`` and ``PrefBandit-Mixed-v0`` (8 contexts × 6 responses, game seed 0):

* exact mode, constructor defaults at β = 0.1, ``--iterations`` steps: the **last iterate's**
  unregularized exploitability and KL(π*_β ‖ π_t) every few iterations (the figure), and the
  fitted linear rate — the least-squares slope of ln KL per iteration over the iterations where
  1e-12 < KL < 1e-2 — where a paper claims one: EGPO and INPO (to π*_β) and MPO's magnet phase
  (a magnet that never moves: the game regularized toward π_ref, whose equilibrium is π*_β);
* sample mode at equal query budgets (``--budget`` comparisons, the zoo's configs, ``--seeds``):
  the last iterate's exploitability (and the average iterate's where the algorithm keeps one), and
  XPO against itself without the optimism term (α = 0, all else equal) and online DPO on
  ``PrefBandit-v0`` (Bradley–Terry, where XPO's claim is made).

Each paper's claim gets a verdict computed from these numbers by the threshold stated beside it
(:func:`verdicts`); the table is printed and written to ``--out``/claims.md. Last line:

    RESULT egpo_rate=<slope> mpo_rate=<slope> inpo_rate=<slope> best_last_iterate_expl=<algo>:<value>

(rates: ln-KL slope per iteration, worst of the two games; best: the lowest mean sample-mode last-
iterate exploitability over both games).

    python benchmarks/last_iterate.py [--iterations 3000] [--budget 100000] [--seeds 0 1 2] [--quick]
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from _quick import parse_args
from scipy.special import rel_entr

import prefzoo
from prefzoo.algorithms.sppo import AverageIterate
from prefzoo.envs import metrics
from prefzoo.zoo.config import resolve
from prefzoo.zoo.papers import result_line

GAMES = ("prefzoo/PrefBandit-Cyclic-v0", "prefzoo/PrefBandit-Mixed-v0")
BT = "prefzoo/PrefBandit-v0"
BETA = 0.1
EXACT = ("sppo", "nash_md", "nash_mp", "wind", "mpo", "inpo", "egpo", "dno")
SAMPLE = ("sppo", "nash_md", "nash_mp", "wind", "mpo", "inpo", "egpo", "spo")
RATE_WINDOW = (1e-12, 1e-2)
# the thresholds of the verdicts
LINEAR_SLOPE = -0.01  # "linear": ln KL falls at least this fast per iteration over the fitted window ...
CONVERGED_KL = 1e-8  # ... and ends below this
INPO_KL = 1e-6
NASH_EXPL = 0.01  # "reaches the (unregularized) equilibrium": exploitability below this
SE_MARGIN = 2  # a sample-mode comparison holds when the gap exceeds this many standard errors
ITERATION_CAP_FACTOR = 3
QUICK = {"iterations": 200, "budget": 5_000, "seeds": [0], "figure": None}  # --quick: the figure goes to --out


def exact_curve(task):
    """(game, algo) → iterations, exploitability and KL(π*_β ‖ π_t) of the last iterate (and the
    average iterate's exploitability where kept); ``algo`` "mpo_phase" is MPO with a fixed magnet."""
    game_id, name, iterations = task
    torch.set_num_threads(1)
    kwargs = {"magnet_every": iterations + 1} if name == "mpo_phase" else {}
    algo = prefzoo.make_algo("mpo" if name == "mpo_phase" else name, game_id, mode="exact",
                             **({"beta": BETA} if name not in ("sppo", "dno") else {}), **kwargs)
    game, nash = algo.game, algo.game.nash(BETA)
    every = max(1, iterations // 300)
    rows = []
    for t in range(0, iterations + 1, every):
        algo.learn(t - algo.iteration, eval_freq=10**9)
        pi = algo.policy_probs()
        avg = algo.average_policy_probs() if isinstance(algo, AverageIterate) else None
        rows.append((t, game.exploitability(pi), game.expectation(rel_entr(nash, pi).sum(1)),
                     np.nan if avg is None else game.exploitability(avg)))
    return (game_id, name), np.array(rows)


def sample_run(task):
    """(game, algo, seed) → the exploitability of the last iterate (and of the average) at the budget,
    or after ITERATION_CAP_FACTOR × budget / (the first iteration's queries) iterations, whichever
    comes first: a self-play group that converges onto one response compares ever fewer pairs."""
    game_id, name, seed, budget = task
    torch.set_num_threads(1)
    algo_name, overrides = ("xpo", {"alpha": 0.0}) if name == "xpo_alpha0" else (name, {})
    cfg = resolve(algo_name, game_id, seed, {"mode": "sample", **overrides})
    algo = prefzoo.make_algo(algo_name, game_id, seed=seed, **cfg.hyperparams).learn(1, eval_freq=10**9)
    cap = ITERATION_CAP_FACTOR * budget / max(algo.queries, 1)
    while algo.queries < budget and algo.iteration < cap:
        algo.learn(1, eval_freq=10**9)
    out = algo.evaluate()
    return (game_id, name, seed), (out[metrics.EXPLOITABILITY], out.get(metrics.AVG_EXPLOITABILITY, np.nan),
                                   algo.queries)


def fitted_slope(curve: np.ndarray) -> float:
    """Least-squares slope of ln KL per iteration where RATE_WINDOW[0] < KL < RATE_WINDOW[1] (NaN if < 3 points)."""
    t, kl = curve[:, 0], curve[:, 2]
    keep = (kl > RATE_WINDOW[0]) & (kl < RATE_WINDOW[1])
    return float(np.polyfit(t[keep], np.log(kl[keep]), 1)[0]) if keep.sum() >= 3 else float("nan")


def runs_of(samples, game: str, algo: str) -> list[tuple]:
    """The sample runs' results (last, average, queries) of ``algo`` on ``game``, one per seed."""
    return [v for (g, a, _), v in samples.items() if g == game and a == algo]


def mean_se(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")


def verdicts(curves, samples, ref_expl) -> list[tuple[str, str, str, bool]]:
    """(algorithm, claim, measured, holds) per claim, from the numbers and the thresholds above."""
    rows = []

    def worst(name, column):  # over both games, at the last iteration
        return max(curves[g, name][-1, column] for g in GAMES)

    for name, paper, kl_bound in (("egpo", "EGPO", CONVERGED_KL), ("inpo", "INPO", INPO_KL)):
        slope = max(fitted_slope(curves[g, name]) for g in GAMES)
        linear = name == "egpo"
        holds = worst(name, 2) < kl_bound and (not linear or slope <= LINEAR_SLOPE)
        rows.append((paper, f"last iterate → π*_β{' linearly' if linear else ''} (exact)",
                     f"KL {worst(name, 2):.1e} (bound {kl_bound:.0e}), ln-KL slope {slope:.3f}/iteration", holds))
    slope = max(fitted_slope(curves[g, "mpo_phase"]) for g in GAMES)
    rows.append(("MPO", "magnet phase: last iterate → its regularized equilibrium linearly (exact)",
                 f"KL {worst('mpo_phase', 2):.1e}, ln-KL slope {slope:.3f}/iteration",
                 worst("mpo_phase", 2) < CONVERGED_KL and slope <= LINEAR_SLOPE))
    rows.append(("MPO", "magnet resets: last iterate → equilibrium of the original game (exact)",
                 f"exploitability {worst('mpo', 1):.1e} (bound {NASH_EXPL})", worst("mpo", 1) < NASH_EXPL))
    rows.append(("DNO", "average iterate → equilibrium of the original game (exact)",
                 f"average {worst('dno', 3):.1e}, last {worst('dno', 1):.2f} (bound {NASH_EXPL})",
                 worst("dno", 3) < NASH_EXPL))
    for g in GAMES:
        last, last_se = mean_se([v[0] for v in runs_of(samples, g, "spo")])
        avg, avg_se = mean_se([v[1] for v in runs_of(samples, g, "spo")])
        rows.append(("SPO", f"self-play PG approaches the minimax winner on an intransitive game ({g.split('/')[1]})",
                     f"last {last:.3f} ± {last_se:.3f}, average {avg:.3f} ± {avg_se:.3f} vs π_ref {ref_expl[g]:.3f}",
                     ref_expl[g] - last > SE_MARGIN * last_se))
    xpo, xpo_se, plain, plain_se, dpo, dpo_se = (
        x for name in ("xpo", "xpo_alpha0", "online_dpo")
        for x in mean_se([v[0] for v in runs_of(samples, BT, name)]))
    rows.append(("XPO", "the optimism term (α > 0) lowers exploitability at equal queries (Bradley–Terry)",
                 f"{xpo:.4f} ± {xpo_se:.4f} vs α = 0 {plain:.4f} ± {plain_se:.4f} (online DPO's config: "
                 f"{dpo:.4f} ± {dpo_se:.4f})", plain - xpo > SE_MARGIN * float(np.hypot(xpo_se, plain_se))))
    return rows


def plot(curves, iterations, path: Path) -> None:
    from prefzoo.zoo.plots import plt, save_figure  # pyplot on the Agg backend

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    for row, g in enumerate(GAMES):
        for col, (column, label) in enumerate(((1, "exploitability (unregularized)"),
                                               (2, f"KL(π*_β ‖ π_t), β = {BETA}"))):
            ax = axes[row, col]
            for name in EXACT + ("mpo_phase",):
                c = curves[g, name]
                ax.plot(c[:, 0], np.maximum(c[:, column], 1e-16), "--" if name == "dno" else "-", lw=1.3,
                        label=name.replace("_phase", " (fixed magnet)") + (" (= sppo)" if name == "dno" else ""))
            ax.set_yscale("log")
            ax.set_title(f"{g.split('/')[1]}: {label}", fontsize=10)
            ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel(f"iteration (exact mode, last iterate; {iterations} iterations)")
    axes[0, 1].legend(fontsize=7, ncol=2)
    save_figure(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000, help="exact-mode iterations")
    parser.add_argument("--budget", type=int, default=100_000, help="sample-mode comparisons per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="results/last_iterate")
    parser.add_argument("--figure", default="benchmarks/figures/last_iterate.png", help="the figure's path")
    args = parse_args(parser, QUICK)
    args.figure = args.figure or str(Path(args.out) / "last_iterate.png")
    exact_tasks = [(g, a, args.iterations) for g in GAMES for a in EXACT + ("mpo_phase",)]
    sample_tasks = [(g, a, s, args.budget) for g in GAMES for a in SAMPLE for s in args.seeds]
    sample_tasks += [(BT, a, s, args.budget) for a in ("xpo", "xpo_alpha0", "online_dpo") for s in args.seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        curves = dict(pool.map(exact_curve, exact_tasks))
        samples = dict(pool.map(sample_run, sample_tasks))
    ref_expl = {g: game.exploitability(game.ref) for g in GAMES for game in [gym.make(g).unwrapped.game]}

    print(f"sample mode, last iterate's exploitability at {args.budget:,} comparisons (mean ± s.e. over seeds "
          f"{args.seeds}; average iterate in brackets where kept; ✂ k/n: k runs stopped by the iteration cap, "
          f"with the mean share of the budget they spent):")
    best = {}
    for name in SAMPLE:
        cells = []
        for g in GAMES:
            values = runs_of(samples, g, name)
            (last, se), (avg, _) = mean_se([v[0] for v in values]), mean_se([v[1] for v in values])
            short = [v[2] / args.budget for v in values if v[2] < args.budget]
            cells.append(f"{last:.3f} ± {se:.3f}" + ("" if np.isnan(avg) else f" [{avg:.3f}]")
                         + (f" ✂ {len(short)}/{len(values)} at {np.mean(short):.0%}" if short else ""))
            best.setdefault(name, []).append(last)
        print(f"  {name:8s} " + "   ".join(f"{g.split('/')[1]}: {c}" for g, c in zip(GAMES, cells, strict=True)))
    print("  π_ref    " + "   ".join(f"{g.split('/')[1]}: {ref_expl[g]:.3f}" for g in GAMES))

    rows = verdicts(curves, samples, ref_expl)
    table = ["| algorithm | claim | measured here | holds? |", "|---|---|---|---|"]
    table += [f"| {a} | {claim} | {measured} | {'yes' if holds else 'no'} |" for a, claim, measured, holds in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "claims.md").write_text("\n".join(table) + "\n")
    (out / "curves.json").write_text(json.dumps({f"{g}|{a}": c.tolist() for (g, a), c in curves.items()}))
    plot(curves, args.iterations, Path(args.figure))
    print("\n".join(["", *table, "", f"figure: {args.figure}", f"claims: {out / 'claims.md'}"]))
    rate = {name: max(fitted_slope(curves[g, key]) for g in GAMES)
            for name, key in (("egpo", "egpo"), ("mpo", "mpo_phase"), ("inpo", "inpo"))}
    winner = min(best, key=lambda name: np.mean(best[name]))
    headline = {f"{name}_rate": value for name, value in rate.items()}
    print(result_line(headline) + f" best_last_iterate_expl={winner}:{np.mean(best[winner]):.3g}")


if __name__ == "__main__":
    main()
