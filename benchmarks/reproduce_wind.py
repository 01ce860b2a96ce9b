"""Reproduce the Faster WIND paper's contextual-bandit claims (Theorem 1, Figures 1(a), 1(b), 2).

Runs exactly what ``prefzoo reproduce wind`` runs (``prefzoo.zoo.papers.wind.reproduce_wind``):
report and PNGs in ``--out``, then the summary (one row per claim: verdict and deciding number) and
the headline numbers as the last line:

    thm1_max_expl       max log-win-rate exploitability of the exact iterative-BoN limit over the
                        cases within Theorem 1's conditions (≈ 0 where it holds)
    fig1a_final_kl      max over methods of KL(π̄*_0 ‖ π_T), no mixing (BoN and exact WIND at β = 0)
    fig1b_max_kl        max over β of KL(π̄*_β ‖ π*_β), WIND's π*_β with payoff P(π≻π′) at the same β
    fig1b_max_kl_half   the same with the margin payoff 2P − 1 (π*_β/2 of the P payoff)
    wind_vs_bon_time    iterative BoN's wall time to the common target / WIND's (> 1: WIND faster)
    wind_vs_bon_queries the same for oracle queries
    runtime_s           seconds for the whole reproduction

    python benchmarks/reproduce_wind.py [--out results/reproduce_wind] [--seeds 0 1 2] [--quick]

``--quick``: the reproduction's own tiny budgets (``WindSettings.quick``) and seed 0 only (a smoke test).
"""

from __future__ import annotations

import argparse

import torch
from _quick import parse_args

from prefzoo.zoo.papers import format_summary, reproduce

QUICK = {"seeds": [0]}  # --quick (explicit flags win)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/reproduce_wind", help="output folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the timing runs")
    args = parse_args(parser, QUICK)
    torch.set_num_threads(1)
    print(format_summary(reproduce("wind", args.out, seeds=args.seeds, quick=args.quick, progress=False)))


if __name__ == "__main__":
    main()
