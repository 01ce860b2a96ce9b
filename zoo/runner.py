"""One training run: the train loop, its progress bar, checkpoints on schedule and on stop, resume.

The run directory (layout, lock, checkpoints, ``progress.csv``) is :mod:`prefzoo.zoo.rundir`'s;
the logger (CSV, TensorBoard, stdout) is :mod:`prefzoo.zoo.run_logging`'s. At the end the final
policy exports itself (:meth:`~prefzoo.algorithms.base.Algorithm.export`: a table writes
``policy.npy``, a language model ``hf_policy/`` and its sample generations) and the runner lists
what it wrote in ``artifacts.txt``. Every result names the game's headline metric.

Resuming validates ``config.yml`` as a fresh run would, refuses a config that differs from the
checkpoint's (naming the changed keys), accepts ``iterations`` only to extend the run, and skips
an unreadable latest checkpoint (empty, truncated, corrupted) for the previous intact one with a
warning. It loads the latest checkpoint (iteration k), keeps the ``progress.csv`` rows with
``time/iterations <= k`` and continues appending; TensorBoard reopens with ``purge_step = k+1``
so events a killed run wrote after its checkpoint are hidden. Since every algorithm saves its
rng and optimizer state, a resumed run ends with the same metrics as an uninterrupted one.

A run of ``nproc`` > 1 processes (:mod:`prefzoo.zoo.distributed`) is trained by each of them with its
:class:`~prefzoo.zoo.distributed.Processes`: the main process does all of the above, the others train
and write nothing; the decisions that read the run directory or the evaluations (which checkpoint,
when to stop) are the main process's, broadcast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
from stable_baselines3.common.logger import Logger
from tqdm.auto import tqdm

import prefzoo
from prefzoo.algorithms.checkpoint import read_checkpoint
from prefzoo.envs.judges import JudgeError
from prefzoo.envs.metrics import ITERATIONS, QUERIES
from prefzoo.envs.oracle import BudgetExhausted
from prefzoo.zoo import rundir
from prefzoo.zoo.config import ConfigError, RunConfig, validate
from prefzoo.zoo.run_logging import log_metrics, make_logger, record_config

BUDGET_SPENT = "budget spent"  # the status of a run whose game refused a query past its max_queries
JUDGE_FAILED = "judge failed"  # a judge or score function raised or answered outside [0, 1] (resumable)
STOPS = (BudgetExhausted, JudgeError)  # oracle failures that stop a run with a checkpoint instead of crashing it
NO_QUERY_PATIENCE = 10  # with a query budget, stop a run that by this iteration makes no more queries

Report = Callable[[dict[str, float], str], None]  # (an evaluation's metrics, the game's headline metric)


@dataclasses.dataclass
class LoopState:
    """What the train loop knows between evaluations; the evaluation callback and the Ctrl-C
    handler (:func:`graceful_interrupt`) update it."""

    logged: int | None  # the last iteration whose metrics were logged (None: none yet)
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)  # the metrics logged there
    stop: str | None = None  # why the loop stopped early: budget, no queries, interrupted, budget spent, judge failed
    interrupted: bool = False  # a first Ctrl-C came: stop at the next evaluation


@contextlib.contextmanager
def graceful_interrupt(state: LoopState):
    """First Ctrl-C: set ``state.interrupted`` (the run stops at the next evaluation and
    checkpoints). Second Ctrl-C: the usual ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if state.interrupted:
            raise KeyboardInterrupt
        state.interrupted = True
        print("\ninterrupt: stopping at the next evaluation and checkpointing "
              "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def build(cfg: RunConfig, env: gym.Env | None = None):
    """The algorithm of a config (a fresh state) on ``env``, made from the config when None."""
    env = gym.make(cfg.env_id, **cfg.env_kwargs) if env is None else env
    return prefzoo.make_algo(cfg.algo, env, seed=cfg.seed, **cfg.hyperparams)


def train(cfg: RunConfig, run_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True,
          verbose: bool | None = None, budget: int | None = None, report: Report | None = None,
          command: str | None = None, handle_sigint: bool = True, processes=None) -> dict[str, Any]:
    """Run (or resume) ``cfg`` in ``run_dir`` under the directory's lock (:func:`~prefzoo.zoo.rundir.run_lock`);
    see :func:`_train` for the arguments. A run that fails once its files exist is marked with
    a ``FAILED`` file holding the error (removed when a resume later finishes it). A process of a run
    across processes (``processes``: :class:`~prefzoo.zoo.distributed.Processes`) other than the main one
    neither locks nor writes the directory.

    Raises:
        ConfigError: ``cfg.nproc`` > 1 without ``processes`` (``compare``, ``tune``, a Python call).
    """
    run_dir = Path(run_dir)
    cfg = validate(cfg)
    if cfg.nproc > 1 and processes is None:
        raise ConfigError(f"nproc={cfg.nproc} trains across processes: `prefzoo train --nproc {cfg.nproc}` or "
                          f"`accelerate launch --num_processes {cfg.nproc} -m prefzoo train ...`; compare, tune and "
                          "Python calls train in one process (nproc=1)")
    options = dict(resume=resume, progress=progress, verbose=verbose, budget=budget, report=report, command=command,
                   handle_sigint=handle_sigint, processes=processes)
    if processes is not None and not processes.is_main:
        return _train(cfg, run_dir, **options)
    run_dir.mkdir(parents=True, exist_ok=True)
    with rundir.run_lock(run_dir):
        try:
            return _train(cfg, run_dir, **options)
        except Exception as err:
            if (run_dir / "config.yml").is_file() and not isinstance(err, ConfigError):
                (run_dir / rundir.FAILED_FILE).write_text(f"{type(err).__name__}: {err}\n")
            raise


def _train(cfg: RunConfig, run_dir: Path, *, resume: bool, progress: bool, verbose: bool | None,
           budget: int | None, report: Report | None, command: str | None, handle_sigint: bool,
           processes) -> dict[str, Any]:
    """Run (or resume) ``cfg`` in ``run_dir``; returns the last logged metrics and the status.

    Args:
        budget: stop at the first evaluation with ``cost/queries >= budget`` (``compare``), or
            after :data:`NO_QUERY_PATIENCE` iterations without any query.
        report: called with each evaluation's metrics and the game's headline metric name
            (``compare``'s progress, ``tune``'s pruning).
        progress: show a tqdm bar.
        verbose: SB3's stdout table at each evaluation (default: when there is no bar).
        handle_sigint: first Ctrl-C = stop at the next evaluation and checkpoint (off in
            ``compare``'s workers, whose parent handles Ctrl-C).
        processes: this process's :class:`~prefzoo.zoo.distributed.Processes` in a run across
            processes (None: one process); only the main one writes.
    """
    writes = processes is None or processes.is_main
    try:
        algo = build(cfg)
    except (TypeError, ValueError, FileNotFoundError) as err:  # bad arguments, a model path that is not there
        raise ConfigError(f"cannot build {cfg.algo} on {cfg.env_id}: {err}") from None
    if processes is not None:
        processes.attach(algo)
    start, done = _restore(algo, cfg, run_dir, resume, processes)
    if done:
        return {"run_dir": str(run_dir), "status": "already done", "iteration": start, "metrics": {},
                "seconds": 0.0, "headline": algo.game.headline}
    logger, lost = (_open_logs(cfg, run_dir, start, resume, not progress if verbose is None else verbose, command)
                    if writes else (Logger(folder=None, output_formats=[]), False))
    algo.set_logger(logger)
    state = LoopState(logged=start)
    if start is None or (lost if processes is None else processes.broadcast(lost)):
        _log_first(algo, logger, state)
    bar = tqdm(total=cfg.iterations, initial=algo.iteration, disable=not (progress and writes), unit="it",
               desc=f"{cfg.algo} s{cfg.seed}", dynamic_ncols=True)
    callback = _evaluation_callback(state, bar, budget, report)
    t0 = time.perf_counter()
    try:
        with graceful_interrupt(state) if handle_sigint else contextlib.nullcontext():
            _learn_in_chunks(algo, cfg, run_dir, state, callback if processes is None
                             else _shared_callback(callback, state, processes), writes)
    except KeyboardInterrupt:
        bar.close()
        logger.close()
        print(f"aborted; the last checkpoint in {run_dir / 'checkpoints'} is intact", file=sys.stderr)
        raise
    _finish(algo, cfg, run_dir, logger, state, writes)
    bar.close()
    logger.close()
    if writes:
        rundir.write_evaluations(run_dir)
        (run_dir / rundir.FAILED_FILE).unlink(missing_ok=True)
    if state.stop == "interrupted" and writes:
        print(f"interrupted at iteration {algo.iteration}; checkpoint saved. Resume with "
              f"`prefzoo train --resume {run_dir}`", file=sys.stderr)
    return {"run_dir": str(run_dir), "status": state.stop or "done", "iteration": algo.iteration,
            "metrics": state.metrics, "seconds": time.perf_counter() - t0, "headline": algo.game.headline}


def _restore(algo, cfg: RunConfig, run_dir: Path, resume: bool, processes) -> tuple[int | None, bool]:
    """``(start, done)``: the iteration of the checkpoint loaded into ``algo`` (None: a fresh start), and
    whether the run had already finished there (nothing loaded). Across processes the main one picks
    and checks the checkpoint, and every process loads that one."""
    writes = processes is None or processes.is_main
    start, checkpoint = rundir.intact_checkpoint(run_dir) if resume and writes else (None, None)  # None: fresh
    if start is not None:
        rundir.check_resumable(cfg, checkpoint, start, run_dir)
    done = start == cfg.iterations and rundir.finished(run_dir)
    if processes is not None:
        start, done = processes.broadcast((start, done))
        if start is not None and checkpoint is None and not done:
            checkpoint = read_checkpoint(rundir.checkpoint_path(run_dir, start))
    if done:
        if writes:
            print(f"{run_dir} already finished its {start} iterations; nothing to do "
                  f"(extend it with --iterations N > {start})", file=sys.stderr)
        return start, True
    if start is not None:
        algo.load_state_dict(checkpoint["state"])
        if writes:
            print(f"resuming {run_dir} from iteration {start}", file=sys.stderr)
    return start, False


def _open_logs(cfg: RunConfig, run_dir: Path, start: int | None, resume: bool, stdout: bool,
               command: str | None) -> tuple[Logger, bool]:
    """Write the run files, open the logger (the config recorded on a fresh run) and say whether the
    scheduled evaluation at the checkpoint ``start`` is missing from ``progress.csv`` (cut short by the budget)."""
    rundir.prepare_run_dir(cfg, run_dir, resume=resume, command=command)
    logger = make_logger(run_dir, stdout=stdout, resume_iteration=start)
    if start is None:
        record_config(logger, cfg)
    logged = rundir.progress_arrays(run_dir).get(ITERATIONS, ())
    return logger, start is not None and start % cfg.eval_freq == 0 and start not in logged


def _log_first(algo, logger: Logger, state: LoopState) -> None:
    """The evaluation at the starting iteration: π_ref on a fresh run (every curve starts at the
    same point), and on a resume whose scheduled evaluation at its checkpoint was lost (the game's
    budget ran out during it). A budget spent by this evaluation stops the run cleanly (resumable
    with a larger one)."""
    try:
        log_metrics(logger, algo.run_evaluation(), algo.iteration)
    except STOPS as err:
        _stop(state, err)
        return
    state.logged = algo.iteration


def _stop(state: LoopState, err: Exception) -> None:
    """Stop the loop on an oracle failure (:data:`STOPS`), saying why in one line."""
    print(f"stopping: {err}", file=sys.stderr)
    state.stop = BUDGET_SPENT if isinstance(err, BudgetExhausted) else JUDGE_FAILED


def _evaluation_callback(state: LoopState, bar, budget: int | None, report: Report | None):
    """``learn``'s callback: record the evaluation in ``state``, move the bar, report, and say
    whether to go on (not past the query ``budget``, nor after a Ctrl-C)."""

    def callback(algo, metrics: dict[str, float]) -> bool:
        previous = state.metrics.get(QUERIES, 0)  # at this process's previous evaluation (0: none yet)
        state.metrics, state.logged = metrics, algo.iteration
        bar.update(algo.iteration - bar.n)
        headline = algo.game.headline
        bar.set_postfix(queries=int(metrics.get(QUERIES, 0)), refresh=False,
                        **{headline.rsplit("/", 1)[-1]: f"{metrics.get(headline, float('nan')):.4f}"})
        if report is not None:
            report(metrics, headline)
        if budget is not None and metrics.get(QUERIES, 0) >= budget:
            state.stop = "budget"
        elif budget is not None and algo.iteration >= NO_QUERY_PATIENCE and metrics.get(QUERIES, 0) == previous:
            # e.g. exact mode, or a self-play group whose responses have become identical (no pair left to
            # compare, so the policy no longer moves): the query budget would never be reached
            state.stop = rundir.NO_QUERIES
        if state.interrupted:
            state.stop = "interrupted"
        return state.stop is None

    return callback


def _shared_callback(callback, state: LoopState, processes):
    """``callback`` in the main process; then every process takes the main's decision (stop or go on)."""

    def shared(algo, metrics: dict[str, float]) -> bool:
        if processes.is_main:
            callback(algo, metrics)
        state.stop, state.logged = processes.broadcast(state.stop), algo.iteration
        return state.stop is None

    return shared


def _learn_in_chunks(algo, cfg: RunConfig, run_dir: Path, state: LoopState, callback, writes: bool = True) -> None:
    """``learn`` up to ``cfg.iterations`` in chunks that end at each ``save_freq`` multiple, with a
    checkpoint there and wherever the run stops early (a capped judge included: resumable), written
    where ``writes``."""
    save_freq = cfg.save_freq or cfg.iterations
    while algo.iteration < cfg.iterations and state.stop is None:
        chunk = min(save_freq - algo.iteration % save_freq, cfg.iterations - algo.iteration)
        try:
            algo.learn(chunk, callback=callback, eval_freq=cfg.eval_freq)
        except STOPS as err:
            _stop(state, err)
        if (algo.iteration % save_freq == 0 or state.stop) and writes:
            _save_checkpoint(algo, cfg, run_dir)


def _finish(algo, cfg: RunConfig, run_dir: Path, logger: Logger, state: LoopState, writes: bool = True) -> None:
    """Log the final iterate (unless just logged, or the oracle stopped the run), save the last
    checkpoint (unless interrupted: the last one is intact) and the final policy (unless the run is
    to go on: interrupted, or its judge failed); only the evaluation where not ``writes``."""
    if state.logged != algo.iteration and state.stop not in (BUDGET_SPENT, JUDGE_FAILED):
        state.metrics = algo.run_evaluation()
        log_metrics(logger, state.metrics, algo.iteration)
    if not writes:
        return
    if state.stop != "interrupted":
        _save_checkpoint(algo, cfg, run_dir)
    if state.stop not in ("interrupted", JUDGE_FAILED):
        rundir.record_artifacts(run_dir, algo.export(run_dir))


def _save_checkpoint(algo, cfg: RunConfig, run_dir: Path) -> None:
    algo.save(rundir.checkpoint_path(run_dir, algo.iteration), rundir.checkpoint_meta(cfg))
