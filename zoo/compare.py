"""``prefzoo compare``: algorithms × seeds in parallel, judged at fixed oracle-query budgets.

Every run is an ordinary ``train`` run (logged under ``<out>/logs/<algo>/<env>_<N>/``) that stops
at the first evaluation where ``cost/queries >= budget``. A run's value at a budget q is read, not
interpolated: the metrics of its last evaluation with ``cost/queries <= q`` (undefined if the run
never reached q). The table gives mean ± standard error over seeds at 25/50/100 % of the budget;
the plots read the same step function on a common grid of queries (and of wall time).

Algorithms with both modes run in ``sample`` mode here (exact mode makes no queries) unless
``--hp mode=…`` says otherwise; a run that makes no queries at all is left out of the
query-budget table and plots, with a note.
"""

from __future__ import annotations

import csv
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import prefzoo
from prefzoo.envs.metrics import QUERIES, TABLE_METRICS
from prefzoo.zoo import backends, config, rundir
from prefzoo.zoo.config import ConfigError, RunConfig

FRACTIONS = (0.25, 0.5, 1.0)

BUDGET_ONLY_CAP = 10**6  # iteration cap when a query budget is given and --iterations is not


# ---------------------------------------------------------------------- reading runs at budgets
def mean_se(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error (ddof=1; 0 for one value) and count over the finite entries."""
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return float(values.mean()), se, n


def summarize(runs: dict[str, list[dict[str, np.ndarray]]], budget: float, headline: str) -> list[dict[str, Any]]:
    """Rows ``{algo, metric, queries, mean, se, n}`` at each fraction of ``budget``: the game's
    ``headline`` metric first, then the other table metrics (:data:`~prefzoo.envs.metrics.METRICS`)."""
    rows = []
    for algo, arrays in runs.items():
        for metric in dict.fromkeys((headline, *TABLE_METRICS)):
            if not any(metric in a for a in arrays):
                continue
            for frac in FRACTIONS:
                q = int(round(frac * budget))
                vals = np.array([rundir.value_at(a[QUERIES], a[metric], q)[0] for a in arrays if metric in a])
                mean, se, n = mean_se(vals)
                rows.append({"algo": algo, "metric": metric, "queries": q, "mean": mean, "se": se, "n": n})
    return rows


def write_tables(rows: list[dict[str, Any]], out: Path, header: str) -> tuple[Path, Path]:
    csv_path, md_path = out / "table.csv", out / "table.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["algo", "metric", "queries", "mean", "se", "n"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    lines = [header, ""]
    for metric in dict.fromkeys(r["metric"] for r in rows):
        sub = [r for r in rows if r["metric"] == metric]
        budgets = list(dict.fromkeys(r["queries"] for r in sub))
        lines += [f"### {metric} (mean ± s.e. over seeds)", "",
                  "| algorithm | " + " | ".join(f"{q:,} queries" for q in budgets) + " |",
                  "|---|" + "---|" * len(budgets)]
        for algo in dict.fromkeys(r["algo"] for r in sub):
            cells = [next(r for r in sub if r["algo"] == algo and r["queries"] == q) for q in budgets]
            lines.append(f"| {algo} | " + " | ".join(
                "n/a" if c["n"] == 0 else f"{c['mean']:.4g} ± {c['se']:.2g}" for c in cells) + " |")
        lines.append("")
    md_path.write_text("\n".join(lines))
    return md_path, csv_path


# ---------------------------------------------------------------------- running
def plan(algos, env_id, seeds, overrides, directory, device, iterations, eval_freq, budget=None) -> list[RunConfig]:
    """One resolved config per (algo, seed); sample mode where the algorithm has it."""
    configs = []
    for algo in algos:
        cls = config.check_algo(algo)
        extra = dict(overrides)
        names = config.hyperparameter_names(algo)
        if "mode" not in extra and "mode" in names and "sample" in cls.supported_modes:
            extra["mode"] = "sample"
        if iterations is not None:
            extra["iterations"] = iterations
        elif budget is not None:
            extra["iterations"] = BUDGET_ONLY_CAP  # the budget decides when a run stops
        if eval_freq is not None:
            extra["eval_freq"] = eval_freq
        for seed in seeds:
            configs.append(config.resolve(algo, env_id, seed, extra, directory, device))
    return configs


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run_all`: the backend has stopped its workers; ``outcomes`` holds the
    runs that had finished (the others have neither a result nor an error)."""

    def __init__(self, outcomes: list[backends.Outcome]):
        super().__init__()
        self.outcomes = outcomes


def run_all(configs: list[RunConfig], out: Path, backend, budget: int | None, progress: bool,
            retries: int = backends.DEFAULT_RETRIES) -> list[backends.Outcome]:
    """Run every config on ``backend`` (a dead or failing run resumes from its last checkpoint,
    ``retries`` times at most); one outcome per config, in order.

    Raises:
        Interrupted: on Ctrl-C (SIGINT to this process; the workers ignore it), after the backend
            stopped the running workers and cancelled the queued runs; SIGINT then stays ignored
            until the caller restores it (the table of the finished runs must still be written).
    """
    run_dirs = [rundir.new_run_dir(out / "logs", c.algo, c.env_id) for c in configs]
    several_envs = len({c.env_id for c in configs}) > 1
    imports = prefzoo.envs.registering_modules({c.env_id for c in configs})
    tasks = [backends.Task(f"{c.algo}{' ' + c.env_id if several_envs else ''} s{c.seed}", c.to_dict(), str(d), budget,
                           imports) for c, d in zip(configs, run_dirs, strict=True)]
    total = len(configs) * budget if budget else sum(c.iterations for c in configs)  # bar units
    bar = tqdm(total=total, disable=not progress, unit="q" if budget else "it", unit_scale=True,
               desc=f"{len(configs)} runs", dynamic_ncols=True)
    done_per_run: dict[str, float] = {}

    def on_progress(key: str, queries: float, headline: str, value: float) -> None:
        done_per_run[key] = min(queries, budget) if budget else queries
        bar.set_postfix_str(f"{key}: q={int(queries)} {headline.rsplit('/', 1)[-1]}={value:.4f}", refresh=False)
        if budget:
            bar.update(sum(done_per_run.values()) - bar.n)

    try:
        outcomes = backend.run(tasks, retries, on_progress)
    except KeyboardInterrupt:  # (only the main thread receives it)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not lose the finished runs' table
        bar.close()
        raise Interrupted([backends.Outcome(t.key, {"run_dir": t.run_dir, "status": "done"}
                                            if rundir.finished(t.run_dir) else None) for t in tasks]) from None
    if not budget:
        bar.update(total - bar.n)
    bar.close()
    return outcomes


def failure_lines(outcomes: list[backends.Outcome]) -> list[str]:
    """One line per run that was retried or still failed, with its errors."""
    lines = []
    for o in outcomes:
        if o.error is not None:
            lines.append(f"- **{o.key} failed** after {o.attempts} attempt{'s' * (o.attempts > 1)}: {o.error}")
        elif o.retried:
            lines.append(f"- {o.key} finished on attempt {o.attempts} (resumed after: {'; '.join(o.retried)})")
    return lines


def compare(algos: list[str], env_id: str, seeds: list[int], out: str | os.PathLike, *, workers: int | None = None,
            budget: int | None = None, iterations: int | None = None, overrides: dict | None = None,
            directory=None, device: str = "auto", progress: bool = True, eval_freq: int | None = None,
            backend: str = "local", address: str | None = None, retries: int = backends.DEFAULT_RETRIES,
            note: str | None = None) -> dict:
    """Run, tabulate and plot; returns the paths written, the table rows and each run's outcome.

    ``backend``: ``local`` (``workers`` processes) or ``ray`` (``address`` of a cluster, else a
    local Ray instance with ``workers`` CPUs); the tables are the same either way. ``note``: a
    line added under the table header (e.g. how the configs were tuned).
    """
    if not algos:
        raise ConfigError(f"no algorithms to compare; registered: {sorted(prefzoo.ALGORITHMS)}")
    if budget is not None and budget <= 0:
        raise ConfigError(f"--budget must be a positive number of queries, got {budget}")
    backends.check_retries(retries)
    out = Path(out)
    configs = plan(algos, env_id, seeds, overrides or {}, directory, device, iterations, eval_freq, budget)
    with backends.make_backend(backend, workers=workers, address=address) as executor:
        out.mkdir(parents=True, exist_ok=True)
        print(f"compare: {', '.join(algos)} on {env_id}, seeds {list(seeds)}, "
              f"budget {budget if budget else 'common'} queries, {executor.describe()}, "
              f"{retries} retr{'y' if retries == 1 else 'ies'} → {out}", flush=True)
        t0 = time.perf_counter()
        interrupted = False
        try:
            outcomes = run_all(configs, out, executor, budget, progress, retries)
        except Interrupted as stop:
            interrupted, outcomes = True, stop.outcomes
    wall = time.perf_counter() - t0
    finished = sum(o.result is not None for o in outcomes)
    try:
        if interrupted and not finished:
            print("interrupted before any run finished; no table", file=sys.stderr)
            return {"interrupted": True, "rows": [], "run_dirs": [], "logs": out / "logs", "wall_s": wall}
        if interrupted:
            stopped = (f"**Interrupted (Ctrl-C): {finished} of {len(configs)} runs finished; the table holds "
                       "those only.**")
            note = f"{note}\n\n{stopped}" if note else stopped
        result = tabulate(configs, outcomes, out, budget, title=env_id, note=note)
    finally:
        if interrupted:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    print(f"{'interrupted after' if interrupted else 'finished'} {finished} of {len(outcomes)} runs in {wall:.0f} s")
    return {**result, "logs": out / "logs", "wall_s": wall, "interrupted": interrupted}


def tabulate(configs: list[RunConfig], outcomes: list[backends.Outcome], out: Path, budget: int | None,
             title: str, note: str | None = None) -> dict:
    """Table (``table.csv``/``table.md``) and plots of the finished runs of one game in ``out``;
    runs that were retried or failed are named under the table header."""
    from prefzoo.zoo import plots

    seeds = sorted({c.seed for c in configs})
    out.mkdir(parents=True, exist_ok=True)
    problems = failure_lines(outcomes)
    if problems:
        print("\n".join(["runs retried or failed:", *problems]), flush=True)

    runs: dict[str, list[dict[str, np.ndarray]]] = {}
    for cfg, outcome in zip(configs, outcomes, strict=True):
        if outcome.result is None:
            continue
        arrays = rundir.budget_arrays(outcome.result, budget)
        if np.nanmax(arrays[QUERIES]) <= 0:
            print(f"note: {cfg.algo} seed {cfg.seed} made no oracle queries; left out of the query-budget table")
            continue
        if outcome.result.get("status") == rundir.NO_QUERIES and budget:
            print(f"note: {cfg.algo} seed {cfg.seed} stopped making queries before the budget (nothing left to "
                  f"compare); its last evaluation holds up to {budget:,} queries")
        elif budget and arrays[QUERIES][-1] < budget:
            print(f"note: {cfg.algo} seed {cfg.seed} stopped at {int(arrays[QUERIES][-1])} queries < budget "
                  f"{budget} (iteration cap {cfg.iterations}; raise --iterations)")
        runs.setdefault(cfg.algo, []).append(arrays)
    if not runs:
        if all(o.result is None for o in outcomes):
            raise ConfigError("every run failed:\n" + "\n".join(problems))
        raise ConfigError("no run made any oracle query; nothing to compare at a query budget")
    common = budget or min(a[QUERIES][-1] for arrays in runs.values() for a in arrays)
    # each result names its game's headline; runs kept after a Ctrl-C have none: the class declares it
    headline = next((o.result["headline"] for o in outcomes if o.result and "headline" in o.result), None) \
        or prefzoo.envs.game_class(configs[0].env_id).headline
    rows = summarize(runs, common, headline)
    header = (f"## {title}: {', '.join(runs)} — {len(seeds)} seeds, budget {int(common):,} oracle queries\n\n"
              + (f"{note}\n\n" if note else "")
              + "Values of each run's last evaluation at or below the budget (progress.csv), mean ± s.e."
              + ("\n\nRuns retried or failed (failed runs are left out of the table):\n\n" + "\n".join(problems)
                 if problems else ""))
    md_path, csv_path = write_tables(rows, out, header)
    figures = plots.comparison_plots(runs, common, out, title=title)
    print((out / "table.md").read_text())
    return {"table_md": md_path, "table_csv": csv_path, "plots": figures, "rows": rows, "budget": common,
            "run_dirs": [o.result["run_dir"] for o in outcomes if o.result is not None],
            "configs": configs, "outcomes": outcomes, "runs": runs}
