"""ALFT log-reward estimators: table build time per K and the exact quality table.

Build time: ``minimax`` (HiGHS LP with exchange) and ``aqp`` (SLSQP QCQP + LP certificate) solved
from scratch, side by side, for K ∈ {4, 8, 16, 32, 64}; the aqp time includes nothing of the
minimax solve (E*_K comes from the minimax solve just before it). Quality: p-weighted sup bias,
bias at p = 1/K and worst-case sd of every table, exact (binomial sums).

Sample efficiency: ``aqp_alft`` (GRU policy) on ``prefzoo/AnswerGame-v0`` (KL utility, skewed
target with min ρ ≈ 0.057, K = 8, 16 prompts × 8 traces per iteration, lr 3e-3) with each of
aqp, digamma, plugin and minimax over seeds 0-2, all in this process: samples until
``alft/kl_answer_to_target`` = KL(ρ_target‖ν_π) first reaches ``--target`` (evaluated every 10
iterations; a run that never reaches it counts as the full budget and is flagged), as a ratio
against plugin, and the final KL at the budget (mean ± s.e.). Two pooled runs (``pool_window``
4, counts of the last 3 iterations added per prompt) show the repeated-prompt regime.

    python benchmarks/alft_estimators.py [--iterations 400] [--target 0.1] [--quick]

``--quick`` (a smoke test of the same code): K ∈ {4, 8}, quality at K = 8, 10 iterations, seeds 0-1.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

import prefzoo
from prefzoo.envs import estimators as est
from prefzoo.envs.metrics import ALFT_KL_TO_TARGET, SAMPLES
from prefzoo.zoo.estimators_cli import markdown, quality_rows

KS = (4, 8, 16, 32, 64)
QUALITY_KS = (16, 32)  # the exact quality tables printed; the last one also gives the aqp/minimax sd ratio


RUNS = {  # label: aqp_alft hyperparameters beyond the shared ones
    "aqp": {"estimator": "aqp"}, "digamma": {"estimator": "digamma"}, "plugin": {"estimator": "plugin"},
    "minimax": {"estimator": "minimax"},
    "plugin_pool4": {"estimator": "plugin", "pool_window": 4},
    "digamma_pool4": {"estimator": "digamma", "pool_window": 4},
}
SHARED = {"utility": "kl", "group_size": 8, "batch_size": 16, "lr": 3e-3}
SEEDS = (0, 1, 2)
EVAL_EVERY = 10
QUICK = {"ks": (4, 8), "quality_ks": (8,), "seeds": (0, 1), "iterations": 10}  # --quick (explicit flags win)


def training_curve(hp: dict, seed: int, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """(samples, alft/kl_answer_to_target) every EVAL_EVERY iterations, from iteration 0."""
    algo = prefzoo.make_algo("aqp_alft", "prefzoo/AnswerGame-v0", seed=seed, **SHARED, **hp)
    samples, kls = [0], [algo.evaluate()[ALFT_KL_TO_TARGET]]
    for _ in range(iterations // EVAL_EVERY):
        algo.learn(EVAL_EVERY, eval_freq=EVAL_EVERY * 10**6)
        metrics = algo.evaluate()
        samples.append(metrics[SAMPLES])
        kls.append(metrics[ALFT_KL_TO_TARGET])
    return np.array(samples), np.array(kls)


def sample_efficiency(iterations: int, target: float, seeds=SEEDS) -> dict[str, dict]:
    print(f"\nsamples to {ALFT_KL_TO_TARGET} <= {target} (KL(rho_target||nu_pi)), aqp_alft on "
          f"prefzoo/AnswerGame-v0, {SHARED}, {iterations} iterations, seeds {seeds}")
    out = {}
    for label, hp in RUNS.items():
        reach, final, censored = [], [], 0
        for seed in seeds:
            samples, kls = training_curve(hp, seed, iterations)
            hit = np.flatnonzero(kls <= target)
            reach.append(samples[hit[0]] if hit.size else samples[-1])
            censored += not hit.size
            final.append(kls[-1])
        out[label] = {"reach": np.array(reach, float), "final": np.array(final), "censored": censored,
                      "start": kls[0]}
    base = out["plugin"]
    print(f"{'estimator':>14} {'samples to target':>20} {'ratio vs plugin':>16} {'final KL':>16} "
          f"{'final / plugin':>15}")
    for label, r in out.items():
        se = r["reach"].std(ddof=1) / np.sqrt(len(seeds))
        fse = r["final"].std(ddof=1) / np.sqrt(len(seeds))
        flag = f" ({r['censored']} not reached)" if r["censored"] else ""
        print(f"{label:>14} {r['reach'].mean():>11.0f} ± {se:<6.0f} {r['reach'].mean() / base['reach'].mean():>16.2f} "
              f"{r['final'].mean():>9.4f} ± {fse:<5.4f} {r['final'].mean() / base['final'].mean():>15.3f}{flag}")
    print(f"(pi_ref: KL = {base['start']:.4f}; budget {iterations * SHARED['batch_size'] * SHARED['group_size']} "
          "samples per run; a run that never reaches the target counts as the budget)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=400, help="aqp_alft iterations per run")
    parser.add_argument("--target", type=float, default=0.1, help=f"target {ALFT_KL_TO_TARGET}")
    parser.add_argument("--quick", action="store_true", help=f"tiny sizes, a few seconds (smoke test): {QUICK}")
    args = parser.parse_args()
    if args.quick:
        parser.set_defaults(iterations=QUICK["iterations"])
        args = parser.parse_args()
    sizes = QUICK if args.quick else {"ks": KS, "quality_ks": QUALITY_KS, "seeds": SEEDS}
    torch.set_num_threads(1)
    print("build time from scratch (s), one run, both solvers in this process")
    print(f"{'K':>4} {'minimax_s':>10} {'aqp_s':>8} {'E*_K·K²':>8} {'aqp gap':>9} {'aqp worst sd':>13}")
    builds = {}
    for K in sizes["ks"]:
        mm = est.build("minimax", K)
        est._MEMORY[est._key("minimax", K, {})] = mm  # aqp's E*_K from this solve, not the cache
        aqp = est.build("aqp", K)
        builds[K] = (mm, aqp)
        print(f"{K:>4} {mm['build_s']:>10.3f} {aqp['build_s']:>8.3f} {mm['value'] * K * K:>8.4f} "
              f"{aqp['gap']:>9.1e} {est.worst_sd(aqp['table']):>13.3g}", flush=True)
    K = sizes["quality_ks"][-1]
    mm, aqp = builds[K]
    ratio = est.worst_sd(aqp["table"]) / est.worst_sd(mm["table"])
    print(f"K={K}: aqp build {aqp['build_s']:.3g} s, aqp/minimax worst sd {ratio:.3g}")
    for K in sizes["quality_ks"]:
        print()
        print(markdown(quality_rows(K), K), end="")
    out = sample_efficiency(args.iterations, args.target, sizes["seeds"])
    samples_ratio = out["aqp"]["reach"].mean() / out["plugin"]["reach"].mean()
    final_ratio = out["aqp"]["final"].mean() / out["plugin"]["final"].mean()
    print(f"RESULT aqp_vs_plugin_samples={samples_ratio:.3g} aqp_final_kl_over_plugin={final_ratio:.3g}")


if __name__ == "__main__":
    main()
