"""The query floor where pairs cannot be listed: queries to reach the same answer-level target for
the online algorithms and for estimate-then-solve over M candidates drawn from π_ref, on
``prefzoo/AnswerTokenGame-v0`` as the number of sequences per prompt grows from 10^2 to 10^20.

Games: family ``cyclic`` (intransitive), 8 prompts, V = 16 tokens, K = 3 answers, S = 8 states,
game seed 0, L ∈ {2, 4, 8, 12, 17} tokens per response (16^L = 2.6·10^2 … 3.0·10^20 sequences).
One metric for every player, exact for all of them: KL(ν*_β ‖ ν_π), β = 0.1, between the answer
marginals of π*_β = ``game.nash(0.1)`` and of the player's policy (``game.answer_kl``; the
candidates' policy has finite support, so its sequence-level KL to π*_β is ∞ and its regularized
exploitability carries β·KL(π‖π_ref) ≈ 3 of support restriction: only the answer level compares).
Target: ``TARGET`` = 0.01.

Players: WIND, SPPO, online DPO and GRPO with the sequence policy of this game (``automaton``: a
logit per prompt, position, automaton state, partial answer and token; π_θ = π_ref at init),
lr 0.01 (``zoo_configs/wind.yml``'s entry for this game), about ``QUERIES_PER_ITERATION``
comparisons per iteration (batch set from each algorithm's comparisons per prompt), other
settings the constructors' defaults (not tuned per algorithm: a statement about these settings).
The floor: ``estimate_then_solve`` with ``candidates=M`` for M ∈ ``CANDIDATES`` (adaptive
allocation, 512 comparisons per iteration); its queries to target are those of the best M (the
first budget at which any M reaches the target, as one would choose M per budget). Online runs
stop at the target or ``ONLINE_CAP`` queries, floor runs at ``FLOOR_CAP``; means over seeds with
a cap standing in for a miss are bounds (written with >).

RESULT: ``crossover_log10_sequences`` = log10 of the smallest 16^L at which WIND needs fewer
queries than the floor (``none`` if no size), ``floor_over_wind_1e20`` = the floor's mean queries
over WIND's at the largest size.

    python benchmarks/large_game_floor.py [--seeds 0 1 2] [--workers 2] [--out results/large_game_floor] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from query_floor import fmt, ratio_text, summary

import prefzoo

BETA, TARGET, VOCAB = 0.1, 0.01, 16
GAME = {"family": "cyclic", "n_contexts": 8, "vocab_size": VOCAB, "n_answers": 3, "n_states": 8, "seed": 0}
LENGTHS, QUICK_LENGTHS = (2, 4, 8, 12, 17), (2, 8)
CANDIDATES, QUICK_CANDIDATES = (16, 32, 64, 128), (16, 64)
QUERIES_PER_ITERATION = 4096
# batch sizes giving about 4,096 comparisons per iteration: WIND and online DPO compare once per
# prompt, SPPO k(k−1)/2 = 10 pairs of its k = 5 samples, GRPO G(G−1)/2 = 6 pairs of its G = 4
ONLINE = {"wind": {"batch_size": 4096, "grad_steps": 5, "eta": 1.0},
          "sppo": {"batch_size": 410, "grad_steps": 5},
          "online_dpo": {"batch_size": 4096, "grad_steps": 5},
          "grpo": {"batch_size": 683}}
FLOOR_CAP, ONLINE_CAP, QUICK_CAPS = 300_000, 400_000, (16_384, 16_384)
ONLINE_EVAL_FREQ, FLOOR_EVAL_FREQ = 2, 4  # iterations between evaluations (8,192 and 2,048 queries)
FIGURE_COPY = Path(__file__).parent / "figures" / "large_game_floor.png"


def run(task: tuple[int, str, int, int]) -> tuple[tuple[int, str, int], float, float]:
    """One run until the target or the cap: (key, queries to target or NaN, best answer KL)."""
    length, player, seed, cap = task
    torch.set_num_threads(1)
    env = gym.make("prefzoo/AnswerTokenGame-v0", max_length=length, **GAME)
    game = env.unwrapped.game
    target = game.nash(BETA)
    if player.startswith("floor"):
        hp, eval_freq = {"candidates": int(player[len("floor"):]), "allocation": "adaptive", "batch_size": 512}, \
            FLOOR_EVAL_FREQ
        agent = prefzoo.make_algo("estimate_then_solve", env, seed=seed, beta=BETA, **hp)
    else:
        agent = prefzoo.make_algo(player, env, seed=seed, mode="sample", policy="automaton", lr=0.01,
                                  **({"beta": BETA} if player != "sppo" else {}), **ONLINE[player])
        eval_freq = ONLINE_EVAL_FREQ
    trace = []

    def record(algo, _):  # the common metric; stop at the target or the cap
        trace.append((algo.queries, game.answer_kl(target, algo.evaluation_policy())))
        return trace[-1][1] > TARGET and algo.queries < cap

    if record(agent, None):
        agent.learn(10**9, callback=record, eval_freq=eval_freq)
    queries, kls = np.array(trace).T
    hit = np.flatnonzero(kls <= TARGET)
    return (length, player, seed), (float(queries[hit[0]]) if len(hit) else math.nan), float(kls.min())


def run_all(lengths, seeds, candidates, caps, workers) -> dict:
    """{(L, player, seed): (queries to target, best KL)} for the floors and the online players."""
    floor_cap, online_cap = caps
    tasks = [(L, f"floor{m}", s, floor_cap) for L in lengths for m in candidates for s in seeds]
    tasks += [(L, p, s, online_cap) for L in lengths for p in ONLINE for s in seeds]
    tasks.sort(key=lambda t: -t[0])  # the longest games first, so that the pool ends together
    with ProcessPoolExecutor(workers) as pool:
        return {key: (q, best) for key, q, best in pool.map(run, tasks)}


def plot(log_sizes, table, path: Path) -> None:
    from prefzoo.zoo.plots import plt, save_figure  # pyplot on the Agg backend

    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    for k, player in enumerate(["floor", *ONLINE]):
        color = plt.rcParams["axes.prop_cycle"].by_key()["color"][k]
        points = [(x, *table[i, player]) for i, x in enumerate(log_sizes)]
        reached = [(x, mean) for x, mean, _, bound in points if not bound]
        label = "estimate_then_solve (best M)" if player == "floor" else player
        ax.plot([x for x, _ in reached], [y for _, y in reached], "-o", color=color, lw=1.5, label=label)
        for x, mean, _, bound in points:
            if bound:  # hollow triangle: not reached in every seed, the mean is a lower bound
                ax.plot(x + 0.15 * (k - 2), mean, "^", color=color, ms=8, mfc="none")
    ax.set_yscale("log")
    ax.set_xlabel("log10 sequences per prompt (16^L)")
    ax.set_ylabel(f"oracle queries to KL(ν*_β ‖ ν_π) ≤ {TARGET}")
    ax.set_title(f"AnswerTokenGame-v0, cyclic, β = {BETA}: online players vs candidates floor\n"
                 "△: not reached in every seed within the cap (a lower bound)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120)


def floor_summary(results, length, seeds, candidates, cap):
    """The floor with the best M per seed: the first queries at which any M reaches the target."""
    return summary([min((q for m in candidates if np.isfinite(q := results[length, f"floor{m}", s][0])),
                        default=math.nan) for s in seeds], cap)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (processes)")
    parser.add_argument("--out", default="results/large_game_floor", help="folder of the PNG, table and JSON")
    parser.add_argument("--quick", action="store_true", help=f"L ∈ {QUICK_LENGTHS}, one seed, M ∈ "
                        f"{QUICK_CANDIDATES}, caps {QUICK_CAPS} (a smoke test of the same code)")
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds
    lengths, candidates = (QUICK_LENGTHS, QUICK_CANDIDATES) if args.quick else (LENGTHS, CANDIDATES)
    floor_cap, online_cap = QUICK_CAPS if args.quick else (FLOOR_CAP, ONLINE_CAP)
    start = time.perf_counter()
    results = run_all(lengths, seeds, candidates, (floor_cap, online_cap), args.workers)

    n, log_sizes = len(seeds), [L * math.log10(VOCAB) for L in lengths]
    table = {}
    for i, L in enumerate(lengths):
        table[i, "floor"] = floor_summary(results, L, seeds, candidates, floor_cap)
        for player in ONLINE:
            table[i, player] = summary([results[L, player, s][0] for s in seeds], online_cap)
    lines = [f"Queries to KL(ν*_β ‖ ν_π) ≤ {TARGET}, mean over seeds (seeds reached / {n}); caps: floor "
             f"{floor_cap:,}, online {online_cap:,}", "",
             "| player | " + " | ".join(f"16^{L} = 10^{x:.1f}" for L, x in zip(lengths, log_sizes, strict=True))
             + " |", "|---" * (len(lengths) + 1) + "|"]
    for player in ["floor", *ONLINE]:
        name = "estimate_then_solve (candidates, best M)" if player == "floor" else player
        cap = floor_cap if player == "floor" else online_cap
        lines.append(f"| {name} | " + " | ".join(fmt(*table[i, player], n, cap) for i in range(len(lengths))) + " |")
    for m in candidates:
        lines.append(f"| floor M = {m} | " + " | ".join(
            fmt(*summary([results[L, f'floor{m}', s][0] for s in seeds], floor_cap), n, floor_cap) for L in lengths)
            + " |")
    best = {p: [min(results[L, p, s][1] for s in seeds) for L in lengths] for p in ONLINE}
    lines += ["", "best KL(ν* ‖ ν_π) reached by the online players (min over seeds, per L): "
              + "; ".join(f"{p} " + ", ".join(f"{v:.3g}" for v in vals) for p, vals in best.items())]
    ratios = [ratio_text(table[i, "floor"], table[i, "wind"]) for i in range(len(lengths))]
    lines += ["", "floor / WIND (queries; > 1: WIND needs fewer): "
              + ", ".join(f"10^{x:.1f} {r}" for x, r in zip(log_sizes, ratios, strict=True))]
    crossover = next((f"{x:.1f}" for i, x in enumerate(log_sizes)
                      if not table[i, "wind"][2] and table[i, "wind"][0] < table[i, "floor"][0]), "none")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(log_sizes, table, out / "large_game_floor.png")
    if not args.quick:  # the README's figure comes from the full run
        FIGURE_COPY.write_bytes((out / "large_game_floor.png").read_bytes())
    (out / "table.md").write_text("\n".join(lines) + "\n")
    (out / "queries_to_target.json").write_text(json.dumps(
        {f"{L}/{p}/{s}": results[L, p, s] for L, p, s in results}, indent=1))
    print("\n".join(lines))
    print(f"\nplot: {out / 'large_game_floor.png'}; total wall {time.perf_counter() - start:.0f} s "
          f"on {args.workers} workers ({os.cpu_count()} cores)")
    print(f"RESULT crossover_log10_sequences={crossover} floor_over_wind_1e20={ratios[-1]}")


if __name__ == "__main__":
    main()
