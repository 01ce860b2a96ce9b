"""A run's logger: SB3's ``Logger`` writing ``progress.csv``, TensorBoard events and (optionally)
stdout, each run with its own (never SB3's global one), and able to resume a run's files.

``progress.csv`` has sorted columns (reproducible whatever the hash seed); a resumed run keeps the
rows up to its checkpoint's iteration and TensorBoard reopens with ``purge_step = k+1``, so events
a killed run wrote after its checkpoint are hidden. The resolved config goes to TensorBoard as
hparams and as a markdown table (style §12).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import (
    CSVOutputFormat,
    HParam,
    HumanOutputFormat,
    Logger,
    TensorBoardOutputFormat,
    filter_excluded_keys,
)
from torch.utils.tensorboard import SummaryWriter

from prefzoo.envs.metrics import EXPLOITABILITY, ITERATIONS
from prefzoo.zoo.config import RunConfig
from prefzoo.zoo.rundir import read_progress

TB_ONLY = ("stdout", "log", "json", "csv")  # exclude-list for TensorBoard-only records


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


def record_config(logger: Logger, cfg: RunConfig) -> None:
    """The resolved config to TensorBoard only: hparams and a markdown table."""
    logger.record("hparams", HParam(hparam_dict(cfg), {EXPLOITABILITY: 0.0}), exclude=TB_ONLY)
    logger.record("config/hyperparameters", config_markdown(cfg), exclude=TB_ONLY)


def log_metrics(logger: Logger, metrics: dict[str, float], iteration: int) -> None:
    """Record and dump one evaluation outside ``learn`` (same keys as ``Algorithm.learn``)."""
    for key, value in {**metrics, ITERATIONS: iteration}.items():
        logger.record(key, value)
    logger.dump(step=iteration)
