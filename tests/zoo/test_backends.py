"""Retries that resume (local backend): a worker killed mid-run changes nothing in the table, and a run
that keeps failing is named with its error."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time

import pytest
from zoo_helpers import ENV, read_csv, sweep, table_without_wall_time

from prefzoo.envs import metrics
from prefzoo.zoo import backends, rundir
from prefzoo.zoo.config import ConfigError

pytestmark = pytest.mark.xdist_group("sweeps")  # shares the session's reference sweep with test_ray.py


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


def test_a_killed_worker_resumes_a_raising_run_is_named_and_the_table_is_unchanged(sweep_configs, reference_sweep,
                                                                                    tmp_path, capfd):
    reference_out, reference = reference_sweep
    assert [o.attempts for o in reference["outcomes"]] == [1, 1, 2, 2]  # sppo: first try + one retry

    out, killed = tmp_path / "killed", []
    first_run = out / "logs" / "wind" / f"{rundir.env_dirname(ENV)}_1"  # wind seed 0, run first by the one worker
    killer = threading.Thread(target=kill_worker_at, args=(first_run / "checkpoints" / "iter_000010.pt", killed))
    killer.start()
    result = sweep(out, sweep_configs)
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
    assert table_without_wall_time(out) == table_without_wall_time(reference_out)
    assert {row["algo"] for row in read_csv(out / "table.csv")} == {"wind"}
    reference_run = reference_out / "logs" / "wind" / first_run.name
    for key in (metrics.QUERIES, metrics.EXPLOITABILITY, metrics.KL_TO_TARGET):  # whole curves, not just the table
        assert [r[key] for r in read_csv(first_run / "progress.csv")] == \
            [r[key] for r in read_csv(reference_run / "progress.csv")]


def test_bad_retries_and_backend_are_clear_errors(sweep_configs, tmp_path):
    with pytest.raises(ConfigError, match="--retries must be a non-negative integer"):
        sweep(tmp_path, sweep_configs, retries=-1)
    with pytest.raises(ConfigError, match="unknown backend 'slurm'"):
        sweep(tmp_path, sweep_configs, backend="slurm")
    with pytest.raises(ConfigError, match="--address is for --backend ray"):
        backends.make_backend("local", address="1.2.3.4:6379")
