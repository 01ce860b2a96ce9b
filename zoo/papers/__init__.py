"""``prefzoo reproduce <paper>``: regenerate a paper's checkable claims on prefzoo games.

Each paper is a subpackage whose reproduce function writes PNGs and a markdown report (claim next to
measured figure, with a verdict computed from it) into ``out`` and returns a summary dict with at
least ``title``, ``verdicts`` (name -> object with ``claim``, ``holds``, ``measured``), ``headline``
(the numbers of the benchmark's RESULT line), ``report`` and ``pngs``. :data:`PAPERS` registers them;
the CLI and ``benchmarks/reproduce_<paper>.py`` print the summary with :func:`format_summary`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Callable

from prefzoo.zoo.papers.wind import reproduce_wind

PAPERS: dict[str, Callable[..., dict[str, Any]]] = {"wind": reproduce_wind}


def reproduce(paper: str, out: str | Path | None = None, seeds=(0, 1, 2), quick: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Dispatch to the paper's reproduction; ``out`` defaults to ``results/reproduce_<paper>``."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; known: {sorted(PAPERS)}")
    return PAPERS[paper](out or f"results/reproduce_{paper}", seeds=seeds, quick=quick, progress=progress)


def result_line(headline: dict[str, float]) -> str:
    """``RESULT k=v …`` of the headline numbers (benchmarks' last line); a NaN (not measured, e.g.
    a ratio of times to a target that a run did not reach) is written ``none``."""
    return "RESULT " + " ".join(f"{k}={'none' if math.isnan(v) else format(v, '.3g')}" for k, v in headline.items())


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text: one row per claim (verdict, deciding number), then the report, the plots
    and the RESULT line."""
    verdicts = list(summary["verdicts"].values())
    width = max(len(v.claim) for v in verdicts)
    rows = [f"{summary['title']}" + ("  (quick: a smoke test, not a result)" if summary.get("quick") else ""), "",
            f"{'claim':{width}s}  {'verdict':14s}  measured"]
    rows += [f"{v.claim:{width}s}  {'holds' if v.holds else 'does not hold':14s}  {v.measured}" for v in verdicts]
    rows += ["", f"report: {summary['report']}", "plots:", *[f"    {p}" for p in summary["pngs"]],
             result_line(summary["headline"])]
    return "\n".join(rows)
