"""One training run: run directory, logger, progress bar, checkpoints, resume.

A run lives in ``<log_folder>/<algo>/<env>_<N>/`` (``env`` = the env id with ``/`` → ``-``, N the
next free integer, as rl-baselines3-zoo's ``get_latest_run_id``) and holds ``config.yml`` (the
resolved :class:`~prefzoo.zoo.config.RunConfig`, sorted), ``command.txt``, ``progress.csv``,
TensorBoard events, ``evaluations.npz``, ``checkpoints/iter_<k>.pt`` and, at the end,
``policy.npy`` (the final ``policy_probs()``; on an LM game ``hf_policy/``, the final policy as a
Hugging Face model folder, and sample generations before and after are printed). One process
writes a run directory at a time: it holds an exclusive ``fcntl.flock`` on ``.lock`` (its PID
inside) for the run's whole life; a run that fails after writing its files gets a ``FAILED``
file with the error.

Checkpoints are data only (:meth:`~prefzoo.algorithms.base.Algorithm.save`) and carry the hash
of the resolved config (all of it but ``iterations``). Resuming validates ``config.yml`` as a
fresh run would, refuses a config that differs from the checkpoint's (naming the changed keys),
accepts ``iterations`` only to extend the run, and skips an unreadable latest checkpoint (empty,
truncated, corrupted) for the previous intact one with a warning.

Resuming loads the latest checkpoint (iteration k), keeps the ``progress.csv`` rows with
``time/iterations <= k`` and continues appending; TensorBoard reopens with ``purge_step = k+1``
so events a killed run wrote after its checkpoint are hidden. Since every algorithm saves its
rng and optimizer state, a resumed run ends with the same metrics as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import os
import re
import shlex
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import yaml
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    HParam,
    HumanOutputFormat,
    Logger,
    TensorBoardOutputFormat,
    filter_excluded_keys,
)
from torch.utils.tensorboard import SummaryWriter
from tqdm.auto import tqdm

import prefzoo
from prefzoo.algorithms.base import CheckpointError, UnsafeCheckpointError, read_checkpoint
from prefzoo.envs.lm.oracles import OracleBudgetExhausted
from prefzoo.envs.metrics import EXPLOITABILITY, ITERATIONS, LM_WIN_RATE_VS_REF, QUERIES, TOKENS_PER_S, WALL_S
from prefzoo.zoo.config import ConfigError, RunConfig, changed_keys, config_hash, fingerprint, validate

WALL_TIME_KEYS = (WALL_S, TOKENS_PER_S)  # the only columns allowed to differ between identical runs
CHECKPOINT_RE = re.compile(r"iter_(\d+)\.pt$")
TB_ONLY = ("stdout", "log", "json", "csv")  # exclude-list for TensorBoard-only records
NO_QUERY_PATIENCE = 10  # with a query budget, stop a run that has made no query by this iteration
LOCK_FILE = ".lock"  # flock'ed by the process that writes the run; holds its PID
FAILED_FILE = "FAILED"  # written (with the error) when a run fails after writing its files


class RunLockedError(ConfigError):
    """Another process holds the run directory's lock."""


# ---------------------------------------------------------------------- run directories
def env_dirname(env_id: str) -> str:
    return env_id.replace("/", "-")


def run_ids(log_folder: str | os.PathLike, algo: str, env_id: str) -> dict[int, Path]:
    """Existing runs ``{N: path}`` of ``algo`` on ``env_id`` under ``log_folder``."""
    folder, prefix = Path(log_folder) / algo, env_dirname(env_id) + "_"
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            suffix = path.name[len(prefix):]
            if path.is_dir() and path.name.startswith(prefix) and suffix.isdigit():
                found[int(suffix)] = path
    return found


def new_run_dir(log_folder: str | os.PathLike, algo: str, env_id: str) -> Path:
    """Create and return ``<log_folder>/<algo>/<env>_<N>`` for the next free N (from 1)."""
    while True:
        n = max(run_ids(log_folder, algo, env_id), default=0) + 1
        path = Path(log_folder) / algo / f"{env_dirname(env_id)}_{n}"
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:  # another process took N meanwhile
            continue


def latest_run_dir(log_folder: str | os.PathLike, algo: str, env_id: str) -> Path:
    runs = run_ids(log_folder, algo, env_id)
    if not runs:
        raise ConfigError(f"no run of {algo} on {env_id} under {log_folder} to resume")
    return runs[max(runs)]


def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """A run's ``config.yml``, validated as a fresh config is (:func:`~prefzoo.zoo.config.validate`)."""
    path = Path(run_dir) / "config.yml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yml)")
    try:
        data = yaml.safe_load(path.read_text())
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path} is not a readable YAML config ({type(err).__name__})") from None
    return validate(RunConfig.from_dict(data), source=str(path))


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike):
    """Hold an exclusive ``flock`` on ``<run_dir>/.lock`` (PID written inside) for the block.

    Raises:
        RunLockedError: another process holds it (its PID named). The lock dies with its
            process, so a killed run never leaves a stale lock.
    """
    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLockedError(f"{run_dir} is in use by another process (PID {holder}, lock file {path}); "
                             "one process writes a run directory at a time") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def intact_checkpoint(run_dir: str | os.PathLike) -> tuple[int | None, dict[str, Any] | None]:
    """``(iteration, checkpoint)`` of the latest readable checkpoint, or ``(None, None)``.

    An unreadable one (empty, truncated, corrupted) is skipped with a warning for the one
    before it. One that asks to unpickle code is refused outright (``ConfigError``)."""
    for iteration, path in sorted(checkpoints(run_dir).items(), reverse=True):
        try:
            return iteration, read_checkpoint(path)
        except UnsafeCheckpointError as err:
            raise ConfigError(str(err)) from None
        except CheckpointError as err:
            warnings.warn(f"{err}; falling back to the previous checkpoint", RuntimeWarning, stacklevel=2)
    return None, None


def check_resumable(cfg: RunConfig, checkpoint: dict[str, Any], iteration: int, run_dir: Path) -> None:
    """``ConfigError`` unless ``cfg`` is the config the checkpoint was trained with, up to its
    budgets: more ``iterations`` (never fewer than the checkpoint's) or another oracle ``max_calls``."""
    stored = checkpoint["meta"].get("config_sha256")
    if stored != config_hash(cfg):
        changed = changed_keys(checkpoint["meta"].get("config", {}), fingerprint(cfg))
        raise ConfigError(f"{run_dir / 'config.yml'} differs from the config its checkpoint (iteration {iteration}) "
                          f"was trained with: changed {', '.join(changed) or 'the config hash'}. A resume continues "
                          "the same run; start a new run for a new config (only the budgets may change: "
                          "--resume RUN --iterations N --max-calls N)")
    if cfg.iterations < iteration:
        raise ConfigError(f"iterations={cfg.iterations} is below the {iteration} iterations {run_dir} already has; "
                          "a resume can only extend a run (nothing was changed)")


def checkpoint_meta(cfg: RunConfig) -> dict[str, Any]:
    return {"config_sha256": config_hash(cfg), "config": fingerprint(cfg)}


def checkpoints(run_dir: str | os.PathLike) -> dict[int, Path]:
    folder = Path(run_dir) / "checkpoints"
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = CHECKPOINT_RE.search(path.name)
            if match:
                found[int(match.group(1))] = path
    return found


def read_progress(run_dir: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """Header and rows of ``progress.csv`` (raw strings)."""
    path = Path(run_dir) / "progress.csv"
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], [r for r in rows[1:] if r]) if rows else ([], [])


def finished(run_dir: str | os.PathLike) -> bool:
    """Whether the run wrote its final policy (``policy.npy``, or ``hf_policy/`` on an LM game)."""
    run_dir = Path(run_dir)
    return (run_dir / "policy.npy").is_file() or (run_dir / "hf_policy" / "config.json").is_file()


def progress_arrays(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``progress.csv`` as ``{column: float array}`` (empty cells → NaN)."""
    header, rows = read_progress(run_dir)
    return {key: np.array([float(r[i]) if i < len(r) and r[i] != "" else np.nan for r in rows])
            for i, key in enumerate(header)}


def write_evaluations(run_dir: str | os.PathLike) -> None:
    """``evaluations.npz``: ``iterations`` plus one array per logged metric."""
    arrays = progress_arrays(run_dir)
    if ITERATIONS in arrays:
        arrays["iterations"] = arrays[ITERATIONS].astype(np.int64)
    np.savez(Path(run_dir) / "evaluations.npz", **arrays)


# ---------------------------------------------------------------------- logger
class RunCSV(CSVOutputFormat):
    """SB3's CSV writer with sorted (hence reproducible) columns that can resume a file.

    SB3 adds new columns in set order (which varies with the hash seed) and opens the file with
    ``w+``; here new columns are sorted and, when ``keep_until`` is given, the rows of an earlier
    run up to that iteration are kept.
    """

    def __init__(self, filename: str, keep_until: int | None = None):
        header, rows = read_progress(Path(filename).parent) if keep_until is not None else ([], [])
        super().__init__(filename)  # truncates
        if header:
            col = header.index(ITERATIONS)
            rows = [r for r in rows if float(r[col]) <= keep_until]
            self.keys = list(header)
            csv.writer(self.file, lineterminator="\n").writerows([header, *rows])
            self.file.flush()

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        values = filter_excluded_keys(key_values, key_excluded, "csv")
        if not values:
            return
        extra = sorted(values.keys() - set(self.keys))
        if extra:  # rewrite the header and pad the earlier rows, as SB3 does, but sorted
            self.file.seek(0)
            lines = self.file.readlines()[1:]
            self.keys.extend(extra)
            self.file.seek(0)
            self.file.truncate()
            self.file.write(",".join(self.keys) + "\n")
            self.file.writelines(line.rstrip("\n") + "," * len(extra) + "\n" for line in lines)
        super().write(key_values, key_excluded, step)


class RunTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard writer, reopened with ``purge_step`` when a run resumes."""

    def __init__(self, folder: str, purge_step: int | None = None):
        self.writer = SummaryWriter(log_dir=folder, purge_step=purge_step)
        self._is_closed = False


def make_logger(run_dir: Path, stdout: bool, resume_iteration: int | None = None) -> Logger:
    """The run's own SB3 logger (never the global one): CSV + TensorBoard (+ stdout)."""
    formats = [RunCSV(str(run_dir / "progress.csv"), keep_until=resume_iteration),
               RunTensorBoard(str(run_dir), purge_step=None if resume_iteration is None else resume_iteration + 1)]
    if stdout:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(folder=str(run_dir), output_formats=formats)


def hparam_dict(cfg: RunConfig) -> dict[str, Any]:
    """Flat scalar view of a config for TensorBoard's hparams plugin."""
    flat = {"algo": cfg.algo, "env_id": cfg.env_id, "seed": cfg.seed, "iterations": cfg.iterations}
    flat.update({f"env_kwargs.{k}": v for k, v in cfg.env_kwargs.items()})
    flat.update(cfg.hyperparams)
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in flat.items()}


def config_markdown(cfg: RunConfig) -> str:
    rows = "\n".join(f"|{k}|{v}|" for k, v in sorted(hparam_dict(cfg).items()))
    return f"|parameter|value|\n|-|-|\n{rows}"


def log_metrics(logger: Logger, metrics: dict[str, float], iteration: int) -> None:
    """Record and dump one evaluation outside ``learn`` (same keys as ``Algorithm.learn``)."""
    for key, value in {**metrics, ITERATIONS: iteration}.items():
        logger.record(key, value)
    logger.dump(step=iteration)


# ---------------------------------------------------------------------- training
@contextlib.contextmanager
def graceful_interrupt(state: dict[str, Any]):
    """First Ctrl-C: set ``state["interrupted"]`` (the run stops at the next evaluation and
    checkpoints). Second Ctrl-C: the usual ``KeyboardInterrupt``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if state.get("interrupted"):
            raise KeyboardInterrupt
        state["interrupted"] = True
        print("\ninterrupt: stopping at the next evaluation and checkpointing "
              "(Ctrl-C again to abort without saving)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def show_generations(algo, when: str) -> None:
    """Print sample generations of an LM policy on held-out prompts (fixed seed: comparable)."""
    lines = algo.game.show_generations(algo.policy)
    print(f"sample generations {when} training:\n  " + "\n  ".join(lines), file=sys.stderr, flush=True)


def write_run_files(cfg: RunConfig, run_dir: Path, command: str | None) -> None:
    (run_dir / "config.yml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=True))
    (run_dir / "command.txt").write_text((command or shlex.join(["prefzoo", *sys.argv[1:]])) + "\n")


def build(cfg: RunConfig, env: gym.Env | None = None):
    """The algorithm of a config (a fresh state) on ``env``, made from the config when None."""
    env = gym.make(cfg.env_id, **cfg.env_kwargs) if env is None else env
    return prefzoo.make_algo(cfg.algo, env, seed=cfg.seed, **cfg.hyperparams)


def train(cfg: RunConfig, run_dir: str | os.PathLike, *, resume: bool = False, progress: bool = True,
          verbose: bool | None = None, budget: int | None = None,
          report: Callable[[dict[str, float]], None] | None = None, command: str | None = None,
          handle_sigint: bool = True) -> dict[str, Any]:
    """Run (or resume) ``cfg`` in ``run_dir`` under the directory's lock (:func:`run_lock`);
    see :func:`_train` for the arguments. A run that fails once its files exist is marked with
    a ``FAILED`` file holding the error (removed when a resume later finishes it)."""
    run_dir = Path(run_dir)
    cfg = validate(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        try:
            return _train(cfg, run_dir, resume=resume, progress=progress, verbose=verbose, budget=budget,
                          report=report, command=command, handle_sigint=handle_sigint)
        except Exception as err:
            if (run_dir / "config.yml").is_file() and not isinstance(err, ConfigError):
                (run_dir / FAILED_FILE).write_text(f"{type(err).__name__}: {err}\n")
            raise


def _train(cfg: RunConfig, run_dir: Path, *, resume: bool, progress: bool, verbose: bool | None,
           budget: int | None, report: Callable[[dict[str, float]], None] | None, command: str | None,
           handle_sigint: bool) -> dict[str, Any]:
    """Run (or resume) ``cfg`` in ``run_dir``; returns the last logged metrics and the status.

    Args:
        budget: stop at the first evaluation with ``cost/queries >= budget`` (``compare``), or
            after :data:`NO_QUERY_PATIENCE` iterations without any query.
        report: called with each evaluation's metrics (``compare``'s progress queue).
        progress: show a tqdm bar.
        verbose: SB3's stdout table at each evaluation (default: when there is no bar).
        handle_sigint: first Ctrl-C = stop at the next evaluation and checkpoint (off in
            ``compare``'s workers, whose parent handles Ctrl-C).
    """
    try:
        algo = build(cfg)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"cannot build {cfg.algo} on {cfg.env_id}: {err}") from None
    start, checkpoint = intact_checkpoint(run_dir) if resume else (None, None)  # None: a fresh start
    if start is not None:
        check_resumable(cfg, checkpoint, start, run_dir)
        if start == cfg.iterations and finished(run_dir):
            print(f"{run_dir} already finished its {start} iterations; nothing to do "
                  f"(extend it with --iterations N > {start})", file=sys.stderr)
            return {"run_dir": str(run_dir), "status": "already done", "iteration": start, "metrics": {},
                    "seconds": 0.0}
        algo.load_state_dict(checkpoint["state"])
        print(f"resuming {run_dir} from iteration {start}", file=sys.stderr)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if not (resume and (run_dir / "config.yml").is_file()) or load_run_config(run_dir) != cfg:  # new budgets
        old_command = run_dir / "command.txt"
        write_run_files(cfg, run_dir, old_command.read_text().strip() if resume and old_command.is_file() else command)
    logger = make_logger(run_dir, stdout=not progress if verbose is None else verbose, resume_iteration=start)
    algo.set_logger(logger)
    state: dict[str, Any] = {"stop": None, "metrics": {}, "logged": start}
    if start is None and hasattr(algo.policy, "save_pretrained"):
        show_generations(algo, "before")
    if start is None:  # iteration 0: π_ref itself, so every curve starts at the same point
        logger.record("hparams", HParam(hparam_dict(cfg), {EXPLOITABILITY: 0.0}), exclude=TB_ONLY)
        logger.record("config/hyperparameters", config_markdown(cfg), exclude=TB_ONLY)
        log_metrics(logger, algo.evaluate(), 0)
        state["logged"] = 0
    bar = tqdm(total=cfg.iterations, initial=algo.iteration, disable=not progress, unit="it",
               desc=f"{cfg.algo} s{cfg.seed}", dynamic_ncols=True)

    def callback(_algo, metrics):
        state["metrics"], state["logged"] = metrics, _algo.iteration
        bar.update(_algo.iteration - bar.n)
        shown = ("win", LM_WIN_RATE_VS_REF) if LM_WIN_RATE_VS_REF in metrics else ("expl", EXPLOITABILITY)
        bar.set_postfix(queries=int(metrics.get(QUERIES, 0)),
                        **{shown[0]: f"{metrics.get(shown[1], float('nan')):.4f}"}, refresh=False)
        if report is not None:
            report(metrics)
        if budget is not None and metrics.get(QUERIES, 0) >= budget:
            state["stop"] = "budget"
        elif budget is not None and _algo.iteration >= NO_QUERY_PATIENCE and not metrics.get(QUERIES):
            state["stop"] = "no queries"  # e.g. exact mode: a query budget is never reached
        if state.get("interrupted"):
            state["stop"] = "interrupted"
        return state["stop"] is None

    save_freq = cfg.save_freq or cfg.iterations
    t0 = time.perf_counter()
    try:
        with graceful_interrupt(state) if handle_sigint else contextlib.nullcontext():
            while algo.iteration < cfg.iterations and state["stop"] is None:
                chunk = min(save_freq - algo.iteration % save_freq, cfg.iterations - algo.iteration)
                try:
                    algo.learn(chunk, callback=callback, eval_freq=cfg.eval_freq)
                except OracleBudgetExhausted as err:  # a capped judge: stop here, resumable from the checkpoint
                    print(f"stopping: {err}", file=sys.stderr)
                    state["stop"] = "oracle_cap"
                if algo.iteration % save_freq == 0 or state["stop"]:
                    algo.save(run_dir / "checkpoints" / f"iter_{algo.iteration:06d}.pt", checkpoint_meta(cfg))
    except KeyboardInterrupt:
        bar.close()
        logger.close()
        print(f"aborted; the last checkpoint in {run_dir / 'checkpoints'} is intact", file=sys.stderr)
        raise
    if state["logged"] != algo.iteration and state["stop"] != "oracle_cap":  # log the final iterate too
        state["metrics"] = algo.evaluate()
        log_metrics(logger, state["metrics"], algo.iteration)
    if state["stop"] != "interrupted":
        algo.save(run_dir / "checkpoints" / f"iter_{algo.iteration:06d}.pt", checkpoint_meta(cfg))
        if hasattr(algo.policy, "save_pretrained"):  # a language model: a Hugging Face folder, not a table
            algo.policy.save_pretrained(run_dir / "hf_policy")
            show_generations(algo, "after")
        else:
            np.save(run_dir / "policy.npy", algo.policy_probs())
    bar.close()
    logger.close()
    write_evaluations(run_dir)
    (run_dir / FAILED_FILE).unlink(missing_ok=True)
    if state["stop"] == "interrupted":
        print(f"interrupted at iteration {algo.iteration}; checkpoint saved. Resume with "
              f"`prefzoo train --resume {run_dir}`", file=sys.stderr)
    return {"run_dir": str(run_dir), "status": state["stop"] or "done", "iteration": algo.iteration,
            "metrics": state["metrics"], "seconds": time.perf_counter() - t0}
