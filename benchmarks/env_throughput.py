"""Preference comparisons per second: batched PrefBandit vector env vs Gymnasium's SyncVectorEnv.

All three contestants hold the *same* game object (``bt``, 8 contexts × 6 responses by default)
with ``num_envs`` copies of the bandit, step with the same pre-drawn action batches, and are
timed in interleaved rounds so machine noise hits all of them. Throughput counts **scored
comparisons only**: the game's ``queries`` counter (one per Bernoulli duel), never env steps.

* ``vector``: ``gym.make_vec(id, n, vectorization_mode="vector_entry_point")`` →
  ``PrefBanditVectorEnv`` (numpy batch, SAME_STEP autoreset: every step is a duel).
* ``sync_same``: ``gym.make_vec(id, n, vectorization_mode="sync",
  vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})``: SyncVectorEnv over the single
  env, resetting inside the terminal step, so every step is a duel too. **The headline speedup
  is against this one** (the strongest SyncVectorEnv configuration).
* ``sync_next``: the default SyncVectorEnv (NEXT_STEP autoreset): every other step is a reset
  step that drops the actions, so it needs twice the calls per scored comparison. Reported for
  reference.

Per round, the vector env runs ``--vec-steps`` steps and each SyncVectorEnv ``--sync-steps``
scored steps (rates are per comparison, so the counts need not match; the vector env gets more
steps only so that its timed span is not a few milliseconds). Threads are limited to 1 and the
process is pinned to one CPU (``--no-pin`` to skip) for the one-core figure.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/env_throughput.py`` (``--quick``: tiny sizes, a
smoke test of the same code).
The last line is ``RESULT speedup_vs_syncvector=<x> comparisons_per_s=<y>``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from _quick import parse_args  # noqa: E402
from gymnasium.vector import AutoresetMode  # noqa: E402

import prefzoo  # noqa: E402

ENV_ID = "prefzoo/PrefBandit-v0"
QUICK = {"num_envs": 64, "rounds": 3, "vec_steps": 100, "sync_steps": 4}  # --quick (explicit flags win)


def timed_run(env, action_batches, calls: int, game) -> tuple[int, float]:
    """Step ``env`` ``calls`` times; return (scored comparisons, seconds)."""
    q0 = game.queries
    start = time.perf_counter()
    for t in range(calls):
        env.step(action_batches[t % len(action_batches)])
    elapsed = time.perf_counter() - start
    return game.queries - q0, elapsed


def measure(envs: dict, calls: dict, action_batches: list, rounds: int, game) -> tuple[dict, dict]:
    """(comparisons/s per round, [calls, comparisons, seconds] in all) of each env, the order of the
    envs alternating between rounds."""
    rates: dict[str, list[float]] = {name: [] for name in envs}
    totals = {name: [0, 0, 0.0] for name in envs}
    for r in range(rounds):
        for name in list(envs) if r % 2 == 0 else list(envs)[::-1]:
            scored, secs = timed_run(envs[name], action_batches, calls[name], game)
            rates[name].append(scored / secs)
            totals[name][0] += calls[name]
            totals[name][1] += scored
            totals[name][2] += secs
    return rates, totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-envs", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vec-steps", type=int, default=1000, help="vector-env steps per round")
    parser.add_argument("--sync-steps", type=int, default=10,
                        help="scored SyncVectorEnv steps per round")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")
    args = parse_args(parser, QUICK)

    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    n = args.num_envs
    game = prefzoo.make_game("bt", seed=0)
    rng = np.random.default_rng(0)
    action_batches = [rng.integers(0, game.n_actions, size=n) for _ in range(16)]

    envs = {
        "vector": gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point",
                               game=game),
        "sync_same": gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="sync", game=game,
                                  vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}),
        "sync_next": gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="sync", game=game),
    }
    # NEXT_STEP scores only every other call, so it gets twice the calls for the same duels
    calls = {"vector": args.vec_steps, "sync_same": args.sync_steps,
             "sync_next": 2 * args.sync_steps}
    for seed, env in enumerate(envs.values()):
        env.reset(seed=seed)
        timed_run(env, action_batches, 2, game)  # warm-up (and the passive checker's first calls)

    rates, totals = measure(envs, calls, action_batches, args.rounds, game)
    med = {name: statistics.median(v) for name, v in rates.items()}
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"numpy {np.__version__}, gymnasium {gym.__version__}, num_envs={n}, "
          f"rounds={args.rounds}, pinned={'no' if args.no_pin else 'one CPU'}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(f"{'env':<12}{'step calls':>12}{'comparisons':>14}{'seconds':>10}"
          f"{'median comp/s':>16}{'min':>12}{'max':>12}{'speedup':>10}")
    for name, (steps, scored, secs) in totals.items():
        print(f"{name:<12}{steps:>12}{scored:>14}{secs:>10.3f}{med[name]:>16.4g}"
              f"{min(rates[name]):>12.4g}{max(rates[name]):>12.4g}"
              f"{med['vector'] / med[name]:>9.1f}x")
    print("speedup vs SyncVectorEnv NEXT_STEP (default autoreset): "
          f"{med['vector'] / med['sync_next']:.1f}x")
    print(f"RESULT speedup_vs_syncvector={med['vector'] / med['sync_same']:.1f} "
          f"comparisons_per_s={med['vector']:.3g}")


if __name__ == "__main__":
    main()
