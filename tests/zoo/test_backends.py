"""Retries that resume (local backend): a worker killed mid-run changes nothing in the table, and a run
that keeps failing is named with its error."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import pytest
from zoo_helpers import ENV, TINY, read_csv

from prefzoo.envs import metrics
from prefzoo.zoo import backends, compare, runner
from prefzoo.zoo.config import ConfigError

BUDGET = 1280  # 32 queries per iteration: 40 iterations per run, a checkpoint every 10


def sweep(out, configs, retries=1, **kwargs):
    return compare.compare(["wind", "sppo"], ENV, [0, 1], out, workers=1, budget=BUDGET, directory=configs,
                           device="cpu", progress=False, retries=retries, **kwargs)


def table_without_wall_time(out):
    return [row for row in read_csv(out / "table.csv") if row["metric"] != metrics.WALL_S]


def kill_worker_at(checkpoint, killed: list, timeout_s: float = 120.0) -> None:
    """SIGKILL this process's worker children as soon as ``checkpoint`` exists."""
    deadline = time.monotonic() + timeout_s
    while not checkpoint.exists():
        if time.monotonic() > deadline:
            return
        time.sleep(0.002)
    for child in mp.active_children():
        os.kill(child.pid, signal.SIGKILL)
        killed.append(child.pid)


@pytest.fixture(scope="module")
def configs(tmp_path_factory):
    """Tiny WIND, and an SPPO whose constructor always raises (negative learning rate)."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / "wind.yml").write_text(TINY)
    (folder / "sppo.yml").write_text("default: {mode: sample, lr: -1.0, env_kwargs: {n_contexts: 3, n_actions: 3}}\n")
    return folder


def test_a_killed_worker_resumes_a_raising_run_is_named_and_the_table_is_unchanged(configs, tmp_path, capfd):
    reference = sweep(tmp_path / "reference", configs)
    assert [o.attempts for o in reference["outcomes"]] == [1, 1, 2, 2]  # sppo: first try + one retry

    out, killed = tmp_path / "killed", []
    first_run = out / "logs" / "wind" / f"{runner.env_dirname(ENV)}_1"  # wind seed 0, run first by the one worker
    killer = threading.Thread(target=kill_worker_at, args=(first_run / "checkpoints" / "iter_000010.pt", killed))
    killer.start()
    result = sweep(out, configs)
    killer.join()
    assert killed, "the worker was never killed"
    wind0, wind1, *sppo = result["outcomes"]
    assert (wind0.retried, wind0.error, wind1.attempts) == (["worker process died (killed by SIGKILL)"], None, 1)
    assert f"resuming {first_run} from iteration" in capfd.readouterr().err  # resumed, not restarted
    table = (out / "table.md").read_text()
    assert "wind s0 finished on attempt 2 (resumed after: worker process died (killed by SIGKILL))" in table
    for outcome in sppo:  # still failing after the retry: named, with the error, and left out of the table
        assert outcome.result is None and len(outcome.retried) == 1 and "cannot build sppo" in outcome.error
        assert f"**{outcome.key} failed** after 2 attempts: {outcome.error}" in table
    assert table_without_wall_time(out) == table_without_wall_time(tmp_path / "reference")
    assert {row["algo"] for row in read_csv(out / "table.csv")} == {"wind"}
    reference_run = tmp_path / "reference" / "logs" / "wind" / first_run.name
    for key in (metrics.QUERIES, metrics.EXPLOITABILITY, metrics.KL_TO_TARGET):  # whole curves, not just the table
        assert [r[key] for r in read_csv(first_run / "progress.csv")] == \
            [r[key] for r in read_csv(reference_run / "progress.csv")]


def test_bad_retries_and_backend_are_clear_errors(configs, tmp_path):
    with pytest.raises(ConfigError, match="--retries must be a non-negative integer"):
        sweep(tmp_path, configs, retries=-1)
    with pytest.raises(ConfigError, match="unknown backend 'slurm'"):
        sweep(tmp_path, configs, backend="slurm")
    with pytest.raises(ConfigError, match="--address is for --backend ray"):
        backends.make_backend("local", address="1.2.3.4:6379")
