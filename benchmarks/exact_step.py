"""One exact WIND step vs the memory-bound floor (a plain batched matvec of the same shapes).

The exact step reads P once (P(y ≻ π_t) for every response), like the matvec, then does O(X·Y)
elementwise work; the ratio should stay near 1. Both are timed interleaved in one run.

    python benchmarks/exact_step.py [--contexts 10000] [--actions 64] [--repeats 15] [--quick]
"""

import argparse
import time

import numpy as np
from _quick import parse_args
from scipy.special import softmax

from prefzoo.algorithms.wind import wind_step
from prefzoo.envs.game import PreferenceGame

QUICK = {"contexts": 1000, "actions": 32, "repeats": 5}  # --quick (explicit flags win)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contexts", type=int, default=10_000)
    parser.add_argument("--actions", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    args = parse_args(parser, QUICK)
    rng = np.random.default_rng(0)
    X, Y = args.contexts, args.actions
    upper = rng.random((X, Y, Y))
    P = np.triu(upper, 1) + np.tril(1 - upper.transpose(0, 2, 1), -1) + 0.5 * np.eye(Y)
    game = PreferenceGame(P, softmax(rng.normal(size=(X, Y)), axis=1))
    pi, log_ref = game.ref.copy(), np.log(game.ref)

    def matvec():
        return np.matmul(P, pi[:, :, None])

    def step():
        return np.exp(wind_step(np.log(pi), log_ref, game.win_rates(pi), 1.0, 0.1))

    times = {"matvec": [], "wind_step": []}
    for _ in range(args.repeats):  # interleaved, best-of to filter the shared machine's noise
        for name, fn in (("matvec", matvec), ("wind_step", step)):
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    best = {k: min(v) for k, v in times.items()}
    gbytes = P.nbytes / 1e9
    for name, t in best.items():
        print(f"{name:10s} best {t * 1e3:8.2f} ms  ({gbytes / t:5.1f} GB/s of P)")
    print(f"RESULT step_over_matvec={best['wind_step'] / best['matvec']:.2f}")


if __name__ == "__main__":
    main()
