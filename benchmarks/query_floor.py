"""The query floor: oracle queries to reach the target for the online algorithms against
estimate-then-solve (compare pairs, solve the estimated game exactly), as the game grows.

Games: PrefBandit-Cyclic (8 contexts, game seed 0) with |Y| ∈ {6, 16, 64, 256, 1024} responses, and
TokenGame-v0 (8 prompts × 781 sequences; every algorithm uses a tabular policy over sequences, so
it is a 781-response game with token-structured preferences). β = 0.1 throughout: WIND and the
floor target π*_β = ``game.nash(0.1)``; iterative BoN (N = 2, mixing matched to β as in
``benchmarks/query_efficiency.py``) its own exact fixed point; SPPO, unregularized, the Nash
equilibrium (exploitability ≤ 0.02, ``query_efficiency.first_hit``'s fallback). Target: KL 0.01
from the algorithm's target to its policy. Hyperparameters: ``zoo_configs/`` unchanged (tuned on
8×6 games; not re-tuned per size) except the batch, grown with |Y|: the tuned batch B (256)
times max(1, |Y|/6) (``online_batch``; 43,690 at |Y| = 1024), so that each response keeps the
samples per iteration it had at |Y| = 6. Floors: ``estimate_then_solve`` with ``uniform`` and
``adaptive`` allocation, re-solved every ``floor_batch`` queries (half a sweep over the pairs,
at least 256), which is the resolution of their counts; each re-solve is warm-started from the
previous solution (``PreferenceGame.nash``'s ``start``), the same equilibrium in fewer Newton steps
(the line "floor re-solves" measures cold against warm on each re-solve of one adaptive floor run
at the largest |Y|).

Caps: a floor stops at ``FLOOR_CAP`` (64M) queries; an online algorithm at
``max(MIN_CAP, CAP_FACTORS[algo] × the better floor's mean)`` (at most ``MAX_CAP``). WIND's factor
is 5, so its count is measured wherever it is within 5× the floor's (the crossover is decided
either way: WIND below the floor's count wins that size, a miss at 5× loses it); iterative BoN's
and SPPO's is 1, which decides whether they beat the floor and no more (neither reaches the target
within the caps at any size). Iterative BoN runs only up to |Y| = ``BON_MAX_Y`` (256): its
exact-normalizer loss is O(batch·|Y|) per gradient step (about 9 s per iteration at |Y| = 1024 on
one core, hours to a cap). |Y| = 2048 (``--sizes ... 2048``) is not in the default run, which
already takes about 11 minutes on 2 shared cores: at 2048 each floor batch is 8.4M queries re-solved by
Newton on [8, 2049, 2049] systems (about 2 s a step), and a WIND iteration does twice the work
of one at 1024.
``--quick`` (a smoke test of the same code) runs |Y| ∈ {6, 16}, one seed, with the caps ``QUICK_CAPS``.
The table gives how many seeds reached the target; a mean or ratio built from a cap is a bound
(written with > or <).

TokenGame-v0 runs only with ``--token``: on a 2-core machine its exact LP Nash (every run's
``game/win_rate_vs_nash``) alone takes minutes per run, and the uniform floor needs tens of millions
of queries over its 2.4M pairs.

RESULT: ``floor_over_wind_Y6`` / ``_Y1024`` = the better floor's mean queries over WIND's (> 1:
WIND needs fewer), ``crossover_Y`` = the smallest bandit |Y| where WIND needs fewer queries than
the better floor in every seed's mean (``none`` if no size).

    python benchmarks/query_floor.py [--seeds 0 1 2] [--workers 2] [--out results/query_floor] [--quick] [--token]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from query_efficiency import EXPLOIT_TARGET, KL_TARGET, first_hit, matched

import prefzoo
from prefzoo.envs import metrics
from prefzoo.envs.game import PreferenceGame
from prefzoo.zoo.config import resolve

BETA, N_CONTEXTS = 0.1, 8
SIZES, QUICK_SIZES = (6, 16, 64, 256, 1024), (6, 16)
BANDIT, TOKEN = "prefzoo/PrefBandit-Cyclic-v0", "prefzoo/TokenGame-v0"
ONLINE = ("wind", "iterative_bon", "sppo")
FLOORS = ("uniform", "adaptive")
FLOOR_CAP, MIN_CAP, MAX_CAP = 64_000_000, 150_000, 64_000_000
CAP_FACTORS = {"wind": 5.0, "iterative_bon": 1.0, "sppo": 1.0}  # × the better floor's mean
BON_MAX_Y = 256  # iterative BoN's largest |Y| (its loss is O(batch·|Y|) per gradient step)
QUICK_CAPS = (40_000, 4_000, 8_000)  # --quick: FLOOR_CAP, MIN_CAP, MAX_CAP
ONLINE_EVAL_FREQ = 4  # iterations between evaluations of the online algorithms
FIGURE_COPY = Path(__file__).parent / "figures" / "query_floor.png"


@functools.cache
def shared_game(game: str):
    """One game object per worker process and game, so that its cached equilibria (the LP Nash of
    ``game/win_rate_vs_nash`` takes minutes on the token game) are solved once; algorithms count
    their own queries, so runs may share it."""
    if game == "token":
        return gym.make(TOKEN).unwrapped.game
    return gym.make(BANDIT, n_contexts=N_CONTEXTS, n_actions=int(game[1:]), seed=0).unwrapped.game


def make_env(game: str):
    """``game`` = "Y<n>" (a PrefBandit-Cyclic game with n responses) or "token"."""
    return gym.make(TOKEN if game == "token" else BANDIT, game=shared_game(game))


def floor_batch(env) -> int:
    game = env.unwrapped.game
    return max(256, game.n_contexts * game.n_actions * (game.n_actions - 1) // 4)


def online_batch(tuned: int, n_responses: int) -> int:
    """An online algorithm's batch on a game of ``n_responses``: its 8×6-tuned batch grown in proportion
    to |Y|/6 (never below it), so that each response keeps the samples per iteration it had at
    |Y| = 6: with the tuned batch alone, the noise of one comparison per sample is averaged over
    fewer samples per response as |Y| grows, and the online algorithms stall at a noise floor."""
    return int(tuned * max(1.0, n_responses / 6))


def run(task: tuple[str, str, int, int]) -> tuple[tuple[str, str, int], float, float, float]:
    """One run until the target or the cap: (key, queries to target or NaN, wall s, best value)."""
    game, algo, seed, cap = task
    torch.set_num_threads(1)
    env = make_env(game)
    if algo in FLOORS:
        hp = {"beta": BETA, "allocation": algo, "batch_size": floor_batch(env)}
        agent, eval_freq = prefzoo.make_algo("estimate_then_solve", env, seed=seed, **hp), 1
    else:
        cfg = resolve(algo, BANDIT if game != "token" else TOKEN, seed=seed, overrides=matched(algo, "cyclic"))
        hp = {**cfg.hyperparams, "mode": "sample"}
        hp["batch_size"] = online_batch(hp["batch_size"], env.unwrapped.game.n_actions)
        agent, eval_freq = prefzoo.make_algo(algo, env, seed=seed, **hp), ONLINE_EVAL_FREQ
    rows = []

    def record(_, values):  # stop at first_hit's criterion or at the cap
        rows.append(values)
        key, target = ((metrics.KL_TO_TARGET, KL_TARGET) if metrics.KL_TO_TARGET in values
                       else (metrics.EXPLOITABILITY, EXPLOIT_TARGET))
        return values[key] > target and values[metrics.QUERIES] < cap

    start = time.perf_counter()
    if record(agent, agent.evaluate()):
        agent.learn(10**9, callback=record, eval_freq=eval_freq)
    trace = {k: np.array([r.get(k, np.nan) for r in rows], float) for k in rows[-1]}
    _, queries, _, best = first_hit(trace)
    return (game, algo, seed), queries, time.perf_counter() - start, best


def summary(values, cap=None) -> tuple[float, int, bool]:
    """(mean with the cap standing in for a miss, seeds reached, whether the mean is a bound)."""
    v = np.asarray(values, float)
    reached = int(np.isfinite(v).sum())
    return float(np.where(np.isfinite(v), v, cap if cap else np.nan).mean()), reached, reached < len(v)


def plot(games, sizes, table, path: Path) -> None:
    from prefzoo.zoo.plots import plt, save_figure  # pyplot on the Agg backend

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = [f"estimate_then_solve ({a})" if a in FLOORS else a for a in FLOORS + ONLINE]
    for k, (color, algo, name) in enumerate(zip(colors, FLOORS + ONLINE, names, strict=False)):
        points = [(size, *table[game, algo]) for game, size in zip(games, sizes, strict=True) if (game, algo) in table]
        reached = [(x, mean) for x, mean, _, bound in points if x != 781 and not bound]
        xs, ys = [x for x, _ in reached], [y for _, y in reached]
        ax.plot(xs, ys, "-o", color=color, lw=1.5, label=name)
        for x, mean, _, bound in points:
            if bound:  # hollow triangle at the cap, nudged sideways per algorithm so that equal caps stay visible
                ax.plot(x * 1.06 ** (k - 2), mean, "^", color=color, ms=8, mfc="none")
            elif x == 781:
                ax.plot(x, mean, "*", color=color, ms=11)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("|Y| responses per context" + (" (★: TokenGame-v0, 781 sequences)" if "token" in games else ""))
    ax.set_ylabel("oracle queries to KL 0.01 (SPPO: exploitability 0.02)")
    ax.set_title(f"The query floor (β = {BETA}, {N_CONTEXTS} contexts)\n△: not reached within the cap (a lower bound)",
                 fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120)


def fmt(mean, reached, bound, n, cap=None) -> str:
    if reached == 0:
        return f"> {cap:,.0f} (0/{n})" if cap else "–"
    return f"{'> ' if bound else ''}{mean:,.0f} ({reached}/{n})"


def ratio_text(floor, wind) -> str:
    """floor mean / WIND mean, marked as a bound where WIND missed the target in some seed."""
    (f_mean, _, f_bound), (w_mean, _, w_bound) = floor, wind
    value = f_mean / w_mean
    return f"<{value:.3g}" if w_bound else (f">{value:.3g}" if f_bound else f"{value:.3g}")


def runs_at(game: str, algo: str) -> bool:
    """Whether ``algo`` runs on ``game`` (iterative BoN only up to |Y| = BON_MAX_Y)."""
    return algo != "iterative_bon" or game == "token" or int(game[1:]) <= BON_MAX_Y


def run_all(games: list[str], seeds: list[int], caps: tuple[int, int, int], workers: int) -> tuple[dict, dict]:
    """The floors first (capped at ``caps[0]`` queries), then the online algorithms, each capped at
    CAP_FACTORS[algo] × the better floor's mean, clipped to [caps[1], caps[2]]. Returns ({(game,
    algo, seed): :func:`run`'s (queries, wall s, best value)}, {(game, algo): online cap})."""
    floor_cap, min_cap, max_cap = caps
    results = {}
    with ProcessPoolExecutor(workers) as pool:
        tasks = [(g, a, s, floor_cap) for g in games for a in FLOORS for s in seeds]
        results.update({key: (q, w, b) for key, q, w, b in pool.map(run, tasks)})
        online_caps = {}
        for g in games:
            best = min(summary([results[g, a, s][0] for s in seeds], floor_cap)[0] for a in FLOORS)
            online_caps.update({(g, a): int(min(max_cap, max(min_cap, CAP_FACTORS[a] * best)))
                                for a in ONLINE if runs_at(g, a)})
        tasks = [(g, a, s, online_caps[g, a]) for a in ONLINE for g in games for s in seeds if (g, a) in online_caps]
        results.update({key: (q, w, b) for key, q, w, b in pool.map(run, tasks)})
    return results, online_caps


def warm_start_speedup(game: str) -> str:
    """The adaptive floor's re-solves (seed 0) on ``game`` until its policy is within KL_TARGET of
    π*_β, each measured both ways in this process: its estimate solved cold (Newton from π_ref) and
    warm (from the previous solution, as ``EstimateThenSolve`` does); total Newton steps and seconds."""
    torch.set_num_threads(1)
    env = make_env(game)
    agent = prefzoo.make_algo("estimate_then_solve", env, seed=0, beta=BETA, allocation="adaptive",
                              batch_size=floor_batch(env))
    truth = env.unwrapped.game
    target, steps, seconds, gap = truth.nash(BETA), {"cold": 0, "warm": 0}, {"cold": 0.0, "warm": 0.0}, 0.0
    while truth.expectation(truth.kl(target, agent.policy_probs())) > KL_TARGET:
        previous = agent.policy_probs()
        agent.learn(1, eval_freq=10**9)
        solutions = {}
        for name, start in (("cold", None), ("warm", previous)):
            solver, tic = PreferenceGame(agent.estimate(), truth.ref, truth.rho), time.perf_counter()
            solutions[name] = solver.nash(BETA, start=start)
            seconds[name] += time.perf_counter() - tic
            steps[name] += solver.newton_steps[BETA]
        gap = max(gap, np.abs(solutions["cold"] - solutions["warm"]).max())
    return (f"floor re-solves at {game} (the adaptive floor, seed 0, its {agent.iteration} re-solves to the target), "
            f"cold vs warm start: {steps['cold']} vs {steps['warm']} Newton steps, {seconds['cold']:.2f} vs "
            f"{seconds['warm']:.2f} s: {seconds['cold'] / seconds['warm']:.2f}x faster warm "
            f"(max |difference| {gap:.1e})")


def report(games, game_sizes, seeds, results, caps, floor_cap) -> tuple[dict, list[str]]:
    """({(game, algo): :func:`summary`} of the runs made; the table's lines, with wall seconds)."""
    n = len(seeds)
    cap_of = {**{(g, a): floor_cap for g in games for a in FLOORS}, **caps}
    table = {(g, a): summary([results[g, a, s][0] for s in seeds], cap) for (g, a), cap in cap_of.items()}
    header = "| algorithm | " + " | ".join(f"|Y| = {s}" if g != "token" else "TokenGame-v0 (781)"
                                            for g, s in zip(games, game_sizes, strict=True)) + " |"
    lines = [f"Queries to target, mean over seeds (seeds reached / {n}); online caps (wind / iterative_bon, "
             "sppo): " + ", ".join(f"{g} {caps[g, 'wind']:,} / {caps[g, 'sppo']:,}" for g in games),
             "", header, "|---" * (len(games) + 1) + "|"]
    for algo in FLOORS + ONLINE:
        name = f"estimate_then_solve ({algo})" if algo in FLOORS else algo
        lines.append(f"| {name} | " + " | ".join(fmt(*table[g, algo], n, cap_of[g, algo]) if (g, algo) in table
                                                 else "not run" for g in games) + " |")
    walls = {a: sum(results[g, a, s][1] for g in games for s in seeds if (g, a, s) in results)
             for a in FLOORS + ONLINE}
    lines += ["", "wall seconds per algorithm (all runs): " + ", ".join(f"{a} {w:.0f}" for a, w in walls.items())]
    return table, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (processes)")
    parser.add_argument("--out", default="results/query_floor", help="folder of the PNG and table")
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES), help="|Y| of the bandit games")
    parser.add_argument("--quick", action="store_true",
                        help=f"|Y| ∈ {{6, 16}}, one seed, caps {QUICK_CAPS} (floor, online min, online max; "
                        "smoke test)")
    parser.add_argument("--token", action="store_true", help="also TokenGame-v0 (781 sequences; slow, see above)")
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    sizes = QUICK_SIZES if args.quick else tuple(args.sizes)
    floor_cap, min_cap, max_cap = QUICK_CAPS if args.quick else (FLOOR_CAP, MIN_CAP, MAX_CAP)
    games = [f"Y{n}" for n in sizes] + (["token"] if args.token else [])
    game_sizes = list(sizes) + ([781] if args.token else [])
    start = time.perf_counter()
    results, caps = run_all(games, seeds, (floor_cap, min_cap, max_cap), args.workers)

    table, lines = report(games, game_sizes, seeds, results, caps, floor_cap)
    if sizes:
        lines += ["", warm_start_speedup(f"Y{max(sizes)}")]

    floor_of = {g: min((table[g, a] for a in FLOORS), key=lambda t: t[0]) for g in games}
    ratios = {g: ratio_text(floor_of[g], table[g, "wind"]) for g in games}
    lines += ["", "better floor / WIND (queries; > 1: WIND needs fewer): "
              + ", ".join(f"{g} {r}" for g, r in ratios.items())]
    crossover = next((s for g, s in zip(games, game_sizes, strict=True) if g != "token"
                      and not table[g, "wind"][2] and table[g, "wind"][0] < floor_of[g][0]), "none")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(games, game_sizes, table, out / "query_floor.png")
    if sizes == SIZES:  # the README's figure comes from the default sizes
        FIGURE_COPY.parent.mkdir(parents=True, exist_ok=True)
        FIGURE_COPY.write_bytes((out / "query_floor.png").read_bytes())
    (out / "table.md").write_text("\n".join(lines) + "\n")
    per_seed = {f"{g}/{a}": [results[g, a, s][0] for s in seeds] for g, a in table}
    (out / "queries_to_target.json").write_text(json.dumps({"caps": {f"{g}/{a}": c for (g, a), c in caps.items()},
                                                            "per_seed": per_seed}, indent=1))
    print("\n".join(lines))
    print(f"\nplot: {out / 'query_floor.png'}; total wall {time.perf_counter() - start:.0f} s "
          f"on {args.workers} workers ({os.cpu_count()} cores)")
    if not sizes:  # token game only
        print(f"RESULT floor_over_wind_token={ratios['token']}")
        return
    last = games[len(sizes) - 1]
    print(f"RESULT floor_over_wind_Y{sizes[0]}={ratios[games[0]]} floor_over_wind_Y{sizes[-1]}={ratios[last]} "
          f"crossover_Y={crossover}")


if __name__ == "__main__":
    main()
