"""ALFT log-reward estimators: table build time per K and the exact quality table.

Build time: ``minimax`` (HiGHS LP with exchange) and ``aqp`` (SLSQP QCQP + LP certificate) solved
from scratch, side by side, for K ∈ {4, 8, 16, 32, 64}; the aqp time includes nothing of the
minimax solve (E*_K comes from the minimax solve just before it). Quality: p-weighted sup bias,
bias at p = 1/K and worst-case sd of every table, exact (binomial sums).

Not yet measured: samples to reach a target ``alft/kl_answer_to_target`` per estimator (needs
the AnswerGame env and the aqp_alft algorithm of issue 6).

    python benchmarks/alft_estimators.py
"""

from __future__ import annotations

from prefzoo.envs import estimators as est
from prefzoo.zoo.estimators_cli import markdown, quality_rows

KS = (4, 8, 16, 32, 64)


def main() -> None:
    print("build time from scratch (s), one run, both solvers in this process")
    print(f"{'K':>4} {'minimax_s':>10} {'aqp_s':>8} {'E*_K·K²':>8} {'aqp gap':>9} {'aqp worst sd':>13}")
    builds = {}
    for K in KS:
        mm = est.build("minimax", K)
        est._MEMORY[est._key("minimax", K, {})] = mm  # aqp's E*_K from this solve, not the cache
        aqp = est.build("aqp", K)
        builds[K] = (mm, aqp)
        print(f"{K:>4} {mm['build_s']:>10.3f} {aqp['build_s']:>8.3f} {mm['value'] * K * K:>8.4f} "
              f"{aqp['gap']:>9.1e} {est.worst_sd(aqp['table']):>13.3g}", flush=True)
    for K in (16, 32):
        print()
        print(markdown(quality_rows(K), K), end="")
    print("\nsamples to target alft/kl_answer_to_target (aqp/digamma/plugin/minimax): "
          "NOT YET MEASURED (needs AnswerGame + aqp_alft)")
    mm32, aqp32 = builds[32]
    ratio = est.worst_sd(aqp32["table"]) / est.worst_sd(mm32["table"])
    print(f"RESULT aqp_build_s_K32={aqp32['build_s']:.3g} aqp_vs_minimax_worst_sd={ratio:.3g}")


if __name__ == "__main__":
    main()
