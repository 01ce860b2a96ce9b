"""Helpers for tests/zoo: a tiny WIND config and a ``prefzoo`` subprocess runner."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ENV = "prefzoo/PrefBandit-Cyclic-v0"
TINY = """\
default:
  mode: sample
  beta: 0.2
  eta: 1.0
  batch_size: 32
  lr: 0.1
  grad_steps: 5
  iterations: 300
  eval_freq: 1
  save_freq: 10
  env_kwargs: {n_contexts: 3, n_actions: 3}
"""
WALL = {"time/wall_s"}
# compare sweeps (tests/zoo/test_backends.py, test_ray.py): tiny WIND, and an SPPO whose constructor always
# raises (negative learning rate); 32 queries per WIND iteration: 40 iterations, a checkpoint every 10
FAILING_SPPO = "default: {mode: sample, lr: -1.0, env_kwargs: {n_contexts: 3, n_actions: 3}}\n"
SWEEP_BUDGET = 1280


def sweep(out: Path, config_dir: Path, workers: int = 1, retries: int = 1, **kwargs) -> dict:
    """``compare`` of WIND and the failing SPPO, seeds 0 and 1, one retry."""
    from prefzoo.zoo import compare

    return compare.compare(["wind", "sppo"], ENV, [0, 1], out, workers=workers, budget=SWEEP_BUDGET,
                           directory=config_dir, device="cpu", progress=False, retries=retries, **kwargs)


def table_without_wall_time(out: Path) -> list[dict[str, str]]:
    return [row for row in read_csv(out / "table.csv") if row["metric"] not in WALL]


def prefzoo_env(config_dir: Path) -> dict[str, str]:
    return {**os.environ, "PREFZOO_CONFIG_DIR": str(config_dir)}


def prefzoo_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefzoo", *args]


def run_prefzoo(config_dir: Path, cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(prefzoo_cmd(*args), cwd=cwd, env=prefzoo_env(config_dir), capture_output=True,
                          text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"prefzoo {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def without_wall_time(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in WALL} for row in rows]


def only_run(log_folder: Path) -> Path:
    runs = sorted((log_folder / "wind").iterdir())
    assert len(runs) == 1, runs
    return runs[0]
