"""``prefzoo reproduce wind``: Yang et al. (2025), Faster WIND, arXiv:2410.20727, on PrefBandit games.

1. Theorem 1: the limit of exact iterative BoN is a Nash equilibrium of the log-win-rate game
   (exploitability from :mod:`prefzoo.envs.log_win_rate`, closed form), and where it is not.
2. Figure 1(a): without mixing, iterative BoN and exact WIND (β = 0) reach the same point.
3. Figure 1(b): with mixing, BoN's fixed point π̄*_β against WIND's π*_β, under the payoff P(π≻π′)
   and the margin 2P − 1.
4. Figure 2: wall time and oracle queries of the sample modes to one common target.

:mod:`.experiments` measures, :mod:`.figures` plots, :mod:`.verdicts` decides each claim from the
numbers by a stated threshold, :mod:`.report` writes the markdown.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from prefzoo.zoo.papers.wind import experiments, figures, report, verdicts

TITLE = "Faster WIND (Yang et al., arXiv:2410.20727)"


def headline(numbers: dict, runtime: float) -> dict[str, float]:
    """The benchmark's RESULT numbers (keys fixed: benchmarks/reproduce_wind.py documents them)."""
    f1b = numbers["figure1b"]["rows"]
    return {
        "thm1_max_expl": verdicts.theorem1_max_expl(numbers["theorem1"]),
        "fig1a_final_kl": max(numbers["figure1a"]["final_kl"].values()),
        "fig1b_max_kl": max(r["payoffs"]["P"]["kl"] for r in f1b),
        "fig1b_max_kl_half": max(r["payoffs"]["margin"]["kl"] for r in f1b),
        "wind_vs_bon_time": verdicts.bon_over_wind(numbers["figure2"], "wall_s"),
        "wind_vs_bon_queries": verdicts.bon_over_wind(numbers["figure2"], "queries"),
        "runtime_s": runtime,
    }


def reproduce_wind(out: str | Path = "results/reproduce_wind", seeds=(0, 1, 2), quick: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Run the four experiments, write their PNGs and ``report.md`` into ``out``.

    Returns the summary dict: ``paper``, ``title``, ``verdicts`` (name -> :class:`verdicts.Verdict`),
    ``headline`` (the RESULT numbers), ``numbers`` (every measurement, by experiment), ``report`` and
    ``pngs`` (paths), ``quick``, ``seeds``, ``runtime_s``.
    """
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = experiments.WindSettings.quick() if quick else experiments.WindSettings()
    seeds = list(seeds)
    start = time.perf_counter()
    steps = tqdm(total=4, desc="reproduce wind", disable=not progress)
    numbers = {}
    for name, run in (("theorem1", experiments.theorem1), ("figure1a", experiments.figure1a),
                      ("figure1b", experiments.figure1b)):
        numbers[name] = run(settings)
        steps.update()
    numbers["figure2"] = experiments.figure2(settings, seeds, progress=progress)
    steps.update()
    steps.close()
    pngs = figures.plot_all(numbers, out)
    runtime = time.perf_counter() - start
    judged = verdicts.evaluate(numbers)
    path = out / "report.md"
    path.write_text(report.build_report(numbers, judged, settings, seeds, quick, out, runtime))
    return {"paper": "wind", "title": TITLE, "verdicts": judged, "headline": headline(numbers, runtime),
            "numbers": numbers, "report": path, "pngs": pngs, "quick": quick, "seeds": seeds, "runtime_s": runtime}
