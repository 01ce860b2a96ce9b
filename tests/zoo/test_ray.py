"""The Ray backend on one real local Ray instance shared by the whole test session (2 CPUs, no
dashboard, a small object store). Under pytest-xdist these tests run in one worker
(``xdist_group`` with ``--dist loadgroup``), so the session starts Ray once."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from zoo_helpers import ENV, SWEEP_BUDGET, TINY, read_csv, sweep, table_without_wall_time, without_wall_time

from prefzoo.zoo import backends, compare, rundir
from prefzoo.zoo.config import ConfigError, RunConfig

pytestmark = pytest.mark.xdist_group("sweeps")  # one Ray start, and the reference sweep of test_backends.py
BUDGET = 640


@pytest.fixture(scope="session")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'prefzoo[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=backends.RAY_OBJECT_STORE_BYTES)
    yield ray
    ray.shutdown()


def test_ray_runs_give_the_local_table_and_run_directories(ray_instance, sweep_configs, reference_sweep, tmp_path):
    local_out, local = reference_sweep
    ray = sweep(tmp_path, sweep_configs, workers=2, backend="ray")
    assert table_without_wall_time(tmp_path) == table_without_wall_time(local_out)
    assert [(o.key, o.attempts, o.error is None) for o in ray["outcomes"]] == \
        [(o.key, o.attempts, o.error is None) for o in local["outcomes"]]  # SPPO failed twice on both
    for local_dir, ray_dir in zip(local["run_dirs"], ray["run_dirs"], strict=True):
        local_dir, ray_dir = Path(local_dir), Path(ray_dir)
        assert local_dir.relative_to(local_out) == ray_dir.relative_to(tmp_path)
        assert sorted(p.name for p in local_dir.iterdir() if not p.name.startswith("events")) == \
            sorted(p.name for p in ray_dir.iterdir() if not p.name.startswith("events"))
        assert without_wall_time(read_csv(ray_dir / "progress.csv")) == \
            without_wall_time(read_csv(local_dir / "progress.csv"))
    assert [p.name for p in ray["plots"]] == ["vs_queries.png", "vs_wall_time.png"]


def test_ray_retries_a_raising_run_and_names_its_error(ray_instance, tmp_path):
    cfg = RunConfig("sppo", ENV, seed=0, hyperparams={"mode": "sample", "lr": -1.0},
                    env_kwargs={"n_contexts": 3, "n_actions": 3})
    (outcome,) = backends.RayBackend().run([backends.Task("sppo s0", cfg.to_dict(), str(tmp_path / "run"), 64)],
                                           retries=1)
    assert outcome.result is None and len(outcome.retried) == 1
    assert outcome.error.startswith("ConfigError: cannot build sppo") and outcome.retried[0] == outcome.error


def test_unreachable_address_is_a_clear_error(ray_instance, tiny_configs, tmp_path):
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster at '127.0.0.1:1'"):
        compare.compare(["wind"], ENV, [0], tmp_path, budget=BUDGET, directory=tiny_configs, device="cpu",
                        progress=False, backend="ray", address="127.0.0.1:1")
    with pytest.raises(ConfigError, match="--address must be host:port"):
        backends.RayBackend(address="nowhere").connect()



def test_a_killed_ray_worker_resumes_its_run_to_the_same_curve(ray_instance, sweep_configs, reference_sweep, tmp_path):
    """The Ray worker training WIND seed 0 is SIGKILLed (its PID read from the run's lock file) once
    the iteration-10 checkpoint exists: the task is retried, resumes from a checkpoint and ends with
    the progress.csv of the uninterrupted local run."""
    reference_run = Path(reference_sweep[1]["run_dirs"][0])
    cfg = rundir.load_run_config(reference_run)
    run_dir, killed = tmp_path / "run", []

    def kill_the_worker():
        checkpoint, deadline = run_dir / "checkpoints" / "iter_000010.pt", time.monotonic() + 120
        while not checkpoint.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        pid = int((run_dir / rundir.LOCK_FILE).read_text())
        os.kill(pid, signal.SIGKILL)
        killed.append((pid, checkpoint.stat().st_ino))

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    (outcome,) = backends.RayBackend().run([backends.Task("wind s0", cfg.to_dict(), str(run_dir), SWEEP_BUDGET)],
                                           retries=1)
    killer.join()
    ((pid, inode),) = killed
    assert pid != os.getpid()
    assert (run_dir / "checkpoints" / "iter_000010.pt").stat().st_ino == inode  # resumed: never rewritten
    assert outcome.result is not None and len(outcome.retried) == 1, (outcome.retried, outcome.error)
    assert outcome.retried[0].startswith("WorkerCrashedError"), outcome.retried
    assert without_wall_time(read_csv(run_dir / "progress.csv")) == \
        without_wall_time(read_csv(reference_run / "progress.csv"))


def test_tuning_trials_run_as_ray_tasks(ray_instance, tmp_path):
    """``tune --backend ray --workers 2``: the trials run in Ray worker processes (recorded per
    trial), all written to the one journal, and the tuned config is written."""
    pytest.importorskip("optuna", reason="optuna is not installed (pip install 'prefzoo[tune]')")
    from prefzoo.zoo import config, tune

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "wind.yml").write_text(TINY)
    shutil.copytree(Path(config.config_dir(None)) / "search", configs / "search")
    result = tune.tune("wind", ENV, tmp_path / "tuned", trials=4, budget=320, n_seeds=1, directory=configs,
                       device="cpu", workers=2, backend="ray")
    workers = {t.user_attrs["worker"] for t in result["study"].trials}
    assert result["trials"] == 4 and workers and all(not w.endswith(f":{os.getpid()}") for w in workers)
    assert ENV in config.load_yaml(result["config"])


def test_an_address_that_accepts_tcp_but_is_not_ray_is_named_within_the_timeout(ray_instance, monkeypatch):
    """A silent server and an HTTP server (e.g. the dashboard's port): a clear error saying what was
    found, after at most the connect timeout (ray.init would wait without end); the real GCS passes."""
    import http.server
    import socket

    monkeypatch.setattr(backends, "RAY_CONNECT_TIMEOUT_S", 1)
    silent = socket.create_server(("127.0.0.1", 0))
    http_server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=http_server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(ConfigError, match=r"is not a Ray cluster: found a server that did not answer within 1 s"):
            backends.RayBackend(address=f"127.0.0.1:{silent.getsockname()[1]}").connect()
        with pytest.raises(ConfigError, match=r"is not a Ray cluster: found an HTTP/1 server \(Ray's dashboard\?\)"):
            backends.RayBackend(address=f"127.0.0.1:{http_server.server_address[1]}").connect()
    finally:
        silent.close()
        http_server.shutdown()
    gcs = ray_instance.get_runtime_context().gcs_address
    assert backends.RayBackend(address=gcs).connect() is ray_instance  # Ray's own gRPC server answers
