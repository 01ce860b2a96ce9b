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
import multiprocessing as mp
import os
import queue as queue_lib
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing.managers import SyncManager
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import prefzoo
from prefzoo.zoo import config, runner
from prefzoo.zoo.config import ConfigError, RunConfig

FRACTIONS = (0.25, 0.5, 1.0)
# game/avg_exploitability: the average iterate, reported by algorithms whose last iterate may cycle (SPPO)
TABLE_METRICS = ("game/exploitability", "game/avg_exploitability", "game/kl_to_target", "game/win_rate_vs_ref",
                 "lm/win_rate_vs_ref", "lm/kl_to_ref", "lm/score", "time/wall_s")  # lm/: estimates on LM games
PLOT_METRICS = ("game/exploitability", "game/avg_exploitability", "game/kl_to_target")
QUERIES, WALL = "cost/queries", "time/wall_s"
BUDGET_ONLY_CAP = 10**6  # iteration cap when a query budget is given and --iterations is not


# ---------------------------------------------------------------------- reading runs at budgets
def value_at(x: np.ndarray, y: np.ndarray, at) -> np.ndarray:
    """The step function "y of the last row with x <= at" (NaN before the first row, past the
    last x and where y is missing). ``x`` must be non-decreasing."""
    at = np.atleast_1d(np.asarray(at, dtype=float))
    idx = np.searchsorted(x, at, side="right") - 1
    out = np.where(idx >= 0, y[np.clip(idx, 0, None)], np.nan)
    return np.where(at <= x[-1], out, np.nan)


def mean_se(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error (ddof=1; 0 for one value) and count over the finite entries."""
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan"), 0
    se = float(values.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return float(values.mean()), se, n


def summarize(runs: dict[str, list[dict[str, np.ndarray]]], budget: float) -> list[dict[str, Any]]:
    """Rows ``{algo, metric, queries, mean, se, n}`` at each fraction of ``budget``."""
    rows = []
    for algo, arrays in runs.items():
        for metric in TABLE_METRICS:
            if not any(metric in a for a in arrays):
                continue
            for frac in FRACTIONS:
                q = int(round(frac * budget))
                vals = np.array([value_at(a[QUERIES], a[metric], q)[0] for a in arrays if metric in a])
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
def _init_worker() -> None:
    import signal

    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C


def _run_one(cfg_dict: dict[str, Any], run_dir: str, budget: int | None, progress_queue, key: str) -> dict:
    last = [0.0]

    def report(metrics):
        now = time.monotonic()
        if now - last[0] > 0.2:
            last[0] = now
            progress_queue.put((key, metrics.get(QUERIES, 0), metrics.get("game/exploitability", np.nan)))

    cfg = RunConfig.from_dict(cfg_dict)
    result = runner.train(cfg, run_dir, progress=False, verbose=False, budget=budget, report=report,
                          command=f"prefzoo compare (run {key})", handle_sigint=False)
    progress_queue.put((key, result["metrics"].get(QUERIES, 0), result["metrics"].get("game/exploitability", np.nan)))
    return result


def plan(algos, env_id, seeds, overrides, directory, device, iterations, eval_freq, budget=None) -> list[RunConfig]:
    """One resolved config per (algo, seed); sample mode where the algorithm has it."""
    configs = []
    for algo in algos:
        cls = config.check_algo(algo)
        extra = dict(overrides)
        names = config.hyperparameter_names(algo)
        if "mode" not in extra and (names is None or "mode" in names) and \
                "sample" in getattr(cls, "supported_modes", ("sample",)):
            extra["mode"] = "sample"
        if iterations is not None:
            extra["iterations"] = iterations
        elif budget is not None:
            extra["iterations"] = BUDGET_ONLY_CAP  # the budget decides when a run stops
        if eval_freq is not None:
            extra["eval_freq"] = eval_freq
        extra.setdefault("save_freq", 0)
        for seed in seeds:
            configs.append(config.resolve(algo, env_id, seed, extra, directory, device))
    return configs


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _restore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the queued runs and end the running ones now (SIGTERM, then SIGKILL after 5 s)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # the executor's own worker table
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


def run_all(configs: list[RunConfig], out: Path, workers: int, budget: int | None,
            progress: bool) -> tuple[list[dict | None], bool]:
    """Run every config in a process pool (spawned workers, one torch thread each).

    Returns the results in ``configs`` order and whether Ctrl-C stopped the pool. Ctrl-C
    (SIGINT to this process; the workers and the queue's manager ignore it) cancels the queued
    runs and terminates the running ones at once; the runs finished by then keep their results,
    the others are ``None``. SIGINT then stays ignored until :func:`compare` has written the
    table of the finished runs (:func:`_restore_sigint`).
    """
    run_dirs = [runner.new_run_dir(out / "logs", c.algo, c.env_id) for c in configs]
    keys = [f"{c.algo} s{c.seed}" for c in configs]
    total = len(configs) * budget if budget else sum(c.iterations for c in configs)  # bar units
    ctx = mp.get_context("spawn")
    manager = SyncManager(ctx=ctx)
    manager.start(_ignore_sigint)  # a terminal's Ctrl-C reaches the whole process group
    interrupted = False
    with manager, ProcessPoolExecutor(max(1, min(workers, len(configs))), mp_context=ctx,
                                      initializer=_init_worker) as pool:
        progress_queue = manager.Queue()
        futures = {pool.submit(_run_one, c.to_dict(), str(d), budget, progress_queue, k): k
                   for c, d, k in zip(configs, run_dirs, keys, strict=True)}
        bar = tqdm(total=total, disable=not progress, unit="q" if budget else "it", unit_scale=True,
                   desc=f"{len(configs)} runs", dynamic_ncols=True)
        done_per_run: dict[str, float] = {}
        pending, results = set(futures), {}
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.3, return_when=FIRST_COMPLETED)
                for fut in finished:
                    results[futures[fut]] = fut.result()
                while True:
                    try:
                        key, queries, expl = progress_queue.get_nowait()
                    except queue_lib.Empty:
                        break
                    done_per_run[key] = min(queries, budget) if budget else queries
                    bar.set_postfix_str(f"done {len(results)}/{len(configs)} | {key}: q={int(queries)} "
                                        f"expl={expl:.4f}", refresh=False)
                if budget:
                    bar.update(sum(done_per_run.values()) - bar.n)
        except KeyboardInterrupt:  # (only the main thread receives it)
            # further Ctrl-C are ignored until compare() has written the table (a second one must
            # neither skip stopping the workers nor lose the finished runs' table)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            interrupted = True
            bar.close()
            _stop_workers(pool)
            for key, run_dir in zip(keys, run_dirs, strict=True):  # finished, but the result was still in flight
                if key not in results and (run_dir / "policy.npy").is_file():
                    results[key] = {"run_dir": str(run_dir), "status": "done"}
            print(f"\ninterrupt: stopped the workers; writing the table of the {len(results)} finished run(s)",
                  file=sys.stderr, flush=True)
        if not budget and not interrupted:
            bar.update(total - bar.n)
        bar.close()
    return [results.get(k) for k in keys], interrupted


def compare(algos: list[str], env_id: str, seeds: list[int], out: str | os.PathLike, *, workers: int | None = None,
            budget: int | None = None, iterations: int | None = None, overrides: dict | None = None,
            directory=None, device: str = "auto", progress: bool = True, eval_freq: int | None = None) -> dict:
    """Run, tabulate and plot; returns the paths written and the table rows."""
    from prefzoo.zoo import plots

    if not algos:
        raise ConfigError(f"no algorithms to compare; registered: {sorted(prefzoo.ALGORITHMS)}")
    if budget is not None and budget <= 0:
        raise ConfigError(f"--budget must be a positive number of queries, got {budget}")
    out = Path(out)
    configs = plan(algos, env_id, seeds, overrides or {}, directory, device, iterations, eval_freq, budget)
    out.mkdir(parents=True, exist_ok=True)
    print(f"compare: {', '.join(algos)} on {env_id}, seeds {list(seeds)}, "
          f"budget {budget if budget else 'common'} queries, {workers or os.cpu_count()} workers → {out}", flush=True)
    t0 = time.perf_counter()
    results, interrupted = run_all(configs, out, workers or os.cpu_count() or 1, budget, progress)
    wall = time.perf_counter() - t0
    finished = [(cfg, res) for cfg, res in zip(configs, results, strict=True) if res is not None]
    if interrupted and not finished:
        _restore_sigint()
        print("interrupted before any run finished; no table", file=sys.stderr)
        return {"interrupted": True, "rows": [], "run_dirs": [], "logs": out / "logs"}

    runs: dict[str, list[dict[str, np.ndarray]]] = {}
    for cfg, res in finished:
        arrays = runner.progress_arrays(res["run_dir"])
        if np.nanmax(arrays[QUERIES]) <= 0:
            print(f"note: {cfg.algo} seed {cfg.seed} made no oracle queries; left out of the query-budget table")
            continue
        if budget and arrays[QUERIES][-1] < budget:
            print(f"note: {cfg.algo} seed {cfg.seed} stopped at {int(arrays[QUERIES][-1])} queries < budget "
                  f"{budget} (iteration cap {cfg.iterations}; raise --iterations)")
        runs.setdefault(cfg.algo, []).append(arrays)
    if not runs:
        if interrupted:
            _restore_sigint()
        raise ConfigError("no run made any oracle query; nothing to compare at a query budget")
    common = budget or min(a[QUERIES][-1] for arrays in runs.values() for a in arrays)
    rows = summarize(runs, common)
    header = (f"## {env_id}: {', '.join(runs)} — {len(seeds)} seeds, budget {int(common):,} oracle queries\n\n"
              f"Values of each run's last evaluation at or below the budget (progress.csv), mean ± s.e.")
    if interrupted:
        header += (f"\n\n**Interrupted (Ctrl-C): {len(finished)} of {len(configs)} runs finished; the table holds "
                   "those only.**")
    md_path, csv_path = write_tables(rows, out, header)
    if interrupted:
        _restore_sigint()
    figures = plots.comparison_plots(runs, common, out, title=env_id)
    print((out / "table.md").read_text())
    print(f"{'interrupted after' if interrupted else 'finished'} {len(finished)} of {len(configs)} runs "
          f"in {wall:.0f} s")
    return {"table_md": md_path, "table_csv": csv_path, "plots": figures, "rows": rows, "interrupted": interrupted,
            "run_dirs": [res["run_dir"] for _, res in finished], "logs": out / "logs"}
