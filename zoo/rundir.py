"""Run directories: where a run lives, who may write it, and what it has written so far.

A run lives in ``<log_folder>/<algo>/<env>_<N>/`` (``env`` = the env id with ``/`` → ``-``, N the
next free integer, as rl-baselines3-zoo's ``get_latest_run_id``) and holds ``config.yml`` (the
resolved :class:`~prefzoo.zoo.config.RunConfig`, sorted), ``command.txt``, ``progress.csv``,
TensorBoard events, ``evaluations.npz``, ``checkpoints/iter_<k>.pt`` and, at the end, the final
policy as its own ``export`` writes it (a table: ``policy.npy``; a language model: ``hf_policy/``
and ``generations.txt``), listed last in ``artifacts.txt``. One process writes a run directory at
a time: it holds an exclusive ``fcntl.flock`` on ``.lock`` (its PID inside) for the run's whole
life; a run that fails after writing its files gets a ``FAILED`` file with the error.

Checkpoints are data only (:meth:`~prefzoo.algorithms.base.Algorithm.save`) and carry the hash
of the resolved config (all of it but ``iterations``): :func:`check_resumable` refuses a config
that differs from the checkpoint's (naming the changed keys) and accepts ``iterations`` only to
extend the run; :func:`intact_checkpoint` skips an unreadable latest checkpoint (empty,
truncated, corrupted) for the previous intact one with a warning.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import os
import re
import shlex
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from prefzoo.algorithms.checkpoint import CheckpointError, UnsafeCheckpointError, read_checkpoint
from prefzoo.envs.metrics import ITERATIONS, QUERIES
from prefzoo.zoo.config import ConfigError, RunConfig, changed_keys, config_hash, fingerprint, safe_yaml, validate

NO_QUERIES = "no queries"  # the status of a budgeted run stopped because it made no new query (runner)
CHECKPOINT_RE = re.compile(r"iter_(\d+)\.pt$")
LOCK_FILE = ".lock"  # flock'ed by the process that writes the run; holds its PID
FAILED_FILE = "FAILED"  # written (with the error) when a run fails after writing its files
ARTIFACTS_FILE = "artifacts.txt"  # the final policy's files, one per line, written after them


class RunLockedError(ConfigError):
    """Another process holds the run directory's lock."""


# ---------------------------------------------------------------------- where runs live
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


def check_no_links(run_dir: str | os.PathLike) -> None:
    """``ConfigError`` naming the first symbolic link inside ``run_dir``: a run writes its files in
    place (lock, CSV, checkpoints), and through a link it would write wherever the link points."""
    for root, dirs, files in os.walk(run_dir):
        for name in dirs + files:
            if os.path.islink(os.path.join(root, name)):
                raise ConfigError(f"{os.path.join(root, name)} is a symbolic link; a run directory holds its own "
                                  "files only (nothing was written)")


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike):
    """Hold an exclusive ``flock`` on ``<run_dir>/.lock`` (PID written inside) for the block.

    Raises:
        RunLockedError: another process holds it (its PID named). The lock dies with its
            process, so a killed run never leaves a stale lock.
        ConfigError: the run directory holds a symbolic link (:func:`check_no_links`).
    """
    check_no_links(run_dir)
    path = Path(run_dir) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
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


# ---------------------------------------------------------------------- config files
def load_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """A run's ``config.yml``, validated as a fresh config is (:func:`~prefzoo.zoo.config.validate`)."""
    path = Path(run_dir) / "config.yml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run directory (no config.yml)")
    try:
        data = safe_yaml(path.read_text(), str(path))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path} is not a readable YAML config ({type(err).__name__})") from None
    return validate(RunConfig.from_dict(data), source=str(path))


def write_run_files(cfg: RunConfig, run_dir: Path, command: str | None) -> None:
    """``config.yml`` (sorted) and ``command.txt`` (``command``, else this process's ``prefzoo`` command line)."""
    (run_dir / "config.yml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=True))
    (run_dir / "command.txt").write_text((command or shlex.join(["prefzoo", *sys.argv[1:]])) + "\n")


def prepare_run_dir(cfg: RunConfig, run_dir: Path, *, resume: bool, command: str | None) -> None:
    """Create ``checkpoints/`` and write the run files (:func:`write_run_files`). A resume rewrites
    them only when ``cfg`` differs from ``config.yml`` (new budgets), keeping the first command."""
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    if not (resume and (run_dir / "config.yml").is_file()) or load_run_config(run_dir) != cfg:
        old_command = run_dir / "command.txt"
        write_run_files(cfg, run_dir, old_command.read_text().strip() if resume and old_command.is_file() else command)


# ---------------------------------------------------------------------- checkpoints
def checkpoints(run_dir: str | os.PathLike) -> dict[int, Path]:
    """The run's checkpoints ``{iteration: path}``."""
    folder = Path(run_dir) / "checkpoints"
    found = {}
    if folder.is_dir():
        for path in folder.iterdir():
            match = CHECKPOINT_RE.search(path.name)
            if match:
                found[int(match.group(1))] = path
    return found


def checkpoint_path(run_dir: Path, iteration: int) -> Path:
    return run_dir / "checkpoints" / f"iter_{iteration:06d}.pt"


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


def checkpoint_meta(cfg: RunConfig) -> dict[str, Any]:
    """What a checkpoint carries of its config: the hash and the flattened config (for the changed keys)."""
    return {"config_sha256": config_hash(cfg), "config": fingerprint(cfg)}


def check_resumable(cfg: RunConfig, checkpoint: dict[str, Any], iteration: int, run_dir: Path) -> None:
    """``ConfigError`` unless ``cfg`` is the config the checkpoint was trained with, up to its
    budgets: more ``iterations`` (never fewer than the checkpoint's) or another ``max_queries``."""
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


# ---------------------------------------------------------------------- results
def record_artifacts(run_dir: Path, paths: list[Path]) -> None:
    """List the final policy's files in ``artifacts.txt`` (atomically, once they are written)."""
    tmp = run_dir / (ARTIFACTS_FILE + ".tmp")
    tmp.write_text("".join(f"{Path(p).relative_to(run_dir)}\n" for p in paths))
    os.replace(tmp, run_dir / ARTIFACTS_FILE)


def finished(run_dir: str | os.PathLike) -> bool:
    """Whether the run wrote its final policy: ``artifacts.txt`` and every file it lists."""
    listing = Path(run_dir) / ARTIFACTS_FILE
    return listing.is_file() and all((Path(run_dir) / name).exists() for name in listing.read_text().splitlines())


def read_progress(run_dir: str | os.PathLike) -> tuple[list[str], list[list[str]]]:
    """Header and rows of ``progress.csv`` (raw strings)."""
    path = Path(run_dir) / "progress.csv"
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], [r for r in rows[1:] if r]) if rows else ([], [])


def progress_arrays(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """``progress.csv`` as ``{column: float array}`` (empty cells → NaN)."""
    header, rows = read_progress(run_dir)
    return {key: np.array([float(r[i]) if i < len(r) and r[i] != "" else np.nan for r in rows])
            for i, key in enumerate(header)}


def budget_arrays(result: dict[str, Any], budget: int | None) -> dict[str, np.ndarray]:
    """:func:`progress_arrays` of a finished run, read at query budgets: a run that queried, then
    stopped because it made no new query (status :data:`NO_QUERIES`: e.g. a self-play group collapsed
    onto one response, with nothing left to compare, so its policy no longer moves) keeps its last
    row up to ``budget`` instead of counting as never reaching it."""
    arrays = progress_arrays(result["run_dir"])
    spent = arrays[QUERIES][-1]
    if budget and result.get("status") == NO_QUERIES and 0 < spent < budget:
        arrays = {key: np.append(values, budget if key == QUERIES else values[-1]) for key, values in arrays.items()}
    return arrays


def value_at(x: np.ndarray, y: np.ndarray, at) -> np.ndarray:
    """The step function "y of the last row with x <= at" (NaN before the first row, past the
    last x and where y is missing). ``x`` must be non-decreasing."""
    at = np.atleast_1d(np.asarray(at, dtype=float))
    idx = np.searchsorted(x, at, side="right") - 1
    out = np.where(idx >= 0, y[np.clip(idx, 0, None)], np.nan)
    return np.where(at <= x[-1], out, np.nan)


def write_evaluations(run_dir: str | os.PathLike) -> None:
    """``evaluations.npz``: ``iterations`` plus one array per logged metric."""
    arrays = progress_arrays(run_dir)
    if ITERATIONS in arrays:
        arrays["iterations"] = arrays[ITERATIONS].astype(np.int64)
    np.savez(Path(run_dir) / "evaluations.npz", **arrays)
