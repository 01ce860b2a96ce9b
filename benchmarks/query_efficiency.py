"""Oracle queries each sample-mode algorithm needs to approach its own exact limit point.

Two games (a transitive Bradley–Terry one, where iterative BoN's order is the reward order, and a
cyclic one), matched regularization (iterative BoN's effective β = α/((1−α)(N−1)) equals WIND's
β), hyperparameters from ``zoo_configs/`` with the learning rate re-tuned here for every algorithm
with the same effort (×{0.5, 1, 2, 4} of the config's, on a separate tuning seed, judged by the
final distance to the algorithm's own limit), then 3 evaluation seeds.

Table (a): queries and wall time to come within KL 0.01 of the algorithm's own exact limit point
(exploitability 0.02 for algorithms without one), or the best value reached within the budget.
Table (b): at equal query budgets, the common metrics — win rate against π_ref, exploitability,
and the regularized exploitability of WIND's game — so cheaper can be checked against worse.

    python benchmarks/query_efficiency.py [--budget 150000] [--seeds 0 1 2]   # ~17 min on 2 busy cores

``--quick``: a 2,000-query budget, one seed, WIND, iterative BoN and SPPO, learning rates ×{1, 2} (a
smoke test of the same code).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from _quick import parse_args

import prefzoo
from prefzoo.algorithms import ALGORITHMS
from prefzoo.envs.log_win_rate import bon_mixing
from prefzoo.envs.metrics import EXPLOITABILITY, KL_TO_TARGET, QUERIES, WALL_S, WIN_RATE_VS_REF
from prefzoo.zoo.config import resolve

BETA = 0.1
GAMES = {"transitive": "prefzoo/PrefBandit-v0", "cyclic": "prefzoo/PrefBandit-Cyclic-v0"}
CANDIDATES = ["wind", "iterative_bon", "sppo", "nash_md", "online_ipo", "grpo"]
KL_TARGET, EXPLOIT_TARGET = 0.01, 0.02
LR_GRID, TUNING_SEED = (0.5, 1.0, 2.0, 4.0), 100
QUICK = {"budget": 2000, "seeds": [0], "algos": ["wind", "iterative_bon", "sppo"], "lr_grid": [1.0, 2.0]}  # --quick


def matched(algo: str, game: str) -> dict:
    """Regularization overrides that put every regularized algorithm on WIND's β."""
    if algo == "iterative_bon":
        n = 4 if game == "transitive" else 2  # BoN_N>2 is defined by the reward order
        return {"n": n, "mixing": bon_mixing(BETA, n)}
    if algo in ("wind", "nash_md"):
        return {"beta": BETA}
    return {}


def run(algo: str, game: str, seed: int, budget: int, lr_scale: float = 1.0) -> dict[str, np.ndarray]:
    cfg = resolve(algo, GAMES[game], seed=seed, overrides=matched(algo, game))
    hp = {**cfg.hyperparams, "mode": "sample"}
    if "lr" in hp:
        hp["lr"] *= lr_scale
    agent = prefzoo.make_algo(algo, GAMES[game], seed=seed, **hp)
    reg_game = agent.game
    rows = []

    def record(algo_, metrics):
        rows.append({**metrics, "reg_expl_wind": reg_game.exploitability(algo_.policy_probs(), BETA)})
        return metrics[QUERIES] < budget

    record(agent, agent.evaluate())
    agent.learn(10**9, callback=record)
    keys = rows[-1].keys()
    return {k: np.array([r.get(k, np.nan) for r in rows], dtype=float) for k in keys}


def tuned_lr_scale(algo: str, game: str, budget: int, grid=LR_GRID) -> float:
    """The learning-rate multiplier with the smallest final distance on the tuning seed."""
    def final(scale):
        trace = run(algo, game, TUNING_SEED, budget, scale)
        return float(trace[first_hit(trace)[0]][-1])
    return min(grid, key=final)


def first_hit(trace: dict[str, np.ndarray]) -> tuple[str, float, float, float]:
    """(criterion, queries, wall_s, best value) at the first evaluation meeting the target."""
    if KL_TO_TARGET in trace and np.isfinite(trace[KL_TO_TARGET]).all():
        key, target = KL_TO_TARGET, KL_TARGET
    else:
        key, target = EXPLOITABILITY, EXPLOIT_TARGET
    hit = np.flatnonzero(trace[key] <= target)
    if len(hit) == 0:
        return key, np.nan, np.nan, float(trace[key].min())
    i = hit[0]
    return key, trace[QUERIES][i], trace[WALL_S][i], float(trace[key][: i + 1].min())


def at_budget(trace: dict[str, np.ndarray], queries: float, key: str) -> float:
    """Metric at the last evaluation with cost/queries ≤ ``queries``."""
    i = np.searchsorted(trace[QUERIES], queries, side="right") - 1
    return float(trace[key][max(i, 0)])


def mean_se(values) -> str:
    v = np.asarray(values, dtype=float)
    if np.isnan(v).any():
        reached = v[~np.isnan(v)]
        return f"not reached ({len(reached)}/{len(v)} seeds)"
    se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0
    return f"{v.mean():.4g} ± {se:.2g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=150_000, help="oracle queries per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--algos", nargs="+", default=[a for a in CANDIDATES if a in ALGORITHMS])
    parser.add_argument("--lr-grid", type=float, nargs="+", default=list(LR_GRID),
                        help="learning-rate multipliers tried on the tuning seed")
    args = parse_args(parser, QUICK)
    torch.set_num_threads(1)
    scales = {(g, a): tuned_lr_scale(a, g, args.budget, args.lr_grid) for g in GAMES for a in args.algos}
    print("learning-rate multiplier chosen per (game, algorithm):", scales)
    traces = {(g, a, s): run(a, g, s, args.budget, scales[g, a])
              for g in GAMES for a in args.algos for s in args.seeds}

    queries_needed = {}
    for game in GAMES:
        print(f"\n## {game} game ({GAMES[game]}), budget {args.budget} queries, seeds {args.seeds}\n")
        print("(a) | algorithm | criterion | queries to target | wall s to target | best value |")
        print("|---|---|---|---|---|")
        for algo in args.algos:
            hits = [first_hit(traces[game, algo, s]) for s in args.seeds]
            crit = hits[0][0].split("/")[1] + (f" ≤ {KL_TARGET}" if "kl" in hits[0][0] else f" ≤ {EXPLOIT_TARGET}")
            queries_needed[game, algo] = [h[1] for h in hits]
            print(f"| {algo} | {crit} | {mean_se([h[1] for h in hits])} | {mean_se([h[2] for h in hits])} | "
                  f"{mean_se([h[3] for h in hits])} |")
        for frac in (0.25, 1.0):
            q = frac * args.budget
            print(f"\n(b) at {q:.0f} queries | algorithm | win rate vs π_ref | exploitability | reg. expl. (WIND β={BETA}) |")
            print("|---|---|---|---|")
            for algo in args.algos:
                cells = [mean_se([at_budget(traces[game, algo, s], q, key) for s in args.seeds])
                         for key in (WIN_RATE_VS_REF, EXPLOITABILITY, "reg_expl_wind")]
                print(f"| {algo} | " + " | ".join(cells) + " |")

    def ratio(other):
        """How many times fewer queries WIND needs (the budget stands in for 'not reached', so the
        ratio is then a lower bound)."""
        if ("transitive", other) not in queries_needed:
            return float("nan")
        fill = lambda v: np.where(np.isnan(v), args.budget, v)  # noqa: E731
        return float(fill(np.array(queries_needed["transitive", other])).mean()
                     / fill(np.array(queries_needed["transitive", "wind"])).mean())

    def reached(other):
        return int(np.isfinite(queries_needed.get(("transitive", other), [np.nan])).sum())

    print(f"\nRESULT wind_vs_bon_queries={ratio('iterative_bon'):.2f} wind_vs_sppo_queries={ratio('sppo'):.2f} "
          f"seeds_reached_wind={reached('wind')} seeds_reached_bon={reached('iterative_bon')} "
          f"seeds_reached_sppo={reached('sppo')}")


if __name__ == "__main__":
    main()
