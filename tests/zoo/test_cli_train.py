"""``prefzoo train`` in subprocesses: run directory, TensorBoard = CSV, determinism, kill + resume."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from zoo_helpers import ENV, only_run, prefzoo_cmd, prefzoo_env, read_csv, run_prefzoo, without_wall_time

import prefzoo
from prefzoo.envs import metrics
from prefzoo.zoo import rundir

TRAIN = ("train", "--algo", "wind", "--env", ENV, "--seed", "1")
METRICS = {metrics.EXPLOITABILITY, metrics.REG_EXPLOITABILITY, metrics.KL_TO_REF, metrics.KL_TO_TARGET,
           metrics.WIN_RATE_VS_REF, metrics.WIN_RATE_VS_NASH, metrics.DUEL_COPELAND_REGRET,
           metrics.QUERIES, metrics.SAMPLES, metrics.WALL_S, metrics.LOSS, metrics.ETA, metrics.ITERATIONS}


pytestmark = pytest.mark.xdist_group("test_cli_train")  # one worker builds the module's `reference` once


@pytest.fixture(scope="module")
def reference(tiny_configs, tmp_path_factory) -> Path:
    """One uninterrupted 300-iteration run (checkpoints every 10)."""
    cwd = tmp_path_factory.mktemp("reference")
    run_prefzoo(tiny_configs, cwd, *TRAIN)
    return only_run(cwd / "logs")


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_tensorboard_matches_csv(run_dir: Path) -> None:
    rows = read_csv(run_dir / "progress.csv")
    events = scalars(run_dir)
    assert set(events) == set(rows[0]), "TensorBoard tags differ from the CSV columns"
    for tag, points in events.items():
        expected = [(int(r["time/iterations"]), float(r[tag])) for r in rows if r[tag] != ""]
        assert [s for s, _ in points] == [s for s, _ in expected], tag
        np.testing.assert_allclose([v for _, v in points], np.float32([v for _, v in expected]), rtol=1e-6,
                                   err_msg=tag)


def test_run_directory(reference):
    assert reference.name == "prefzoo-PrefBandit-Cyclic-v0_1" and reference.parent.name == "wind"
    cfg = yaml.safe_load((reference / "config.yml").read_text())
    assert cfg["env_id"] == ENV and cfg["env_kwargs"] == {"n_contexts": 3, "n_actions": 3}
    assert cfg["seed"] == 1 and list(cfg["hyperparams"]) == sorted(cfg["hyperparams"])
    assert cfg["hyperparams"]["device"] == "auto"  # --device default, passed to the algorithm
    assert (reference / "command.txt").read_text().startswith("prefzoo train --algo wind")
    rows = read_csv(reference / "progress.csv")
    assert set(rows[0]) == METRICS
    assert [int(r["time/iterations"]) for r in rows] == list(range(301))  # iteration 0 = π_ref
    saved = sorted(rundir.checkpoints(reference))
    assert saved == list(range(10, 301, 10))
    evaluations = np.load(reference / "evaluations.npz")
    np.testing.assert_array_equal(evaluations["iterations"], np.arange(301))
    np.testing.assert_allclose(evaluations["game/exploitability"], [float(r["game/exploitability"]) for r in rows])
    # policy.npy is the final policy, and the final checkpoint restores it
    env_kwargs = cfg["env_kwargs"]
    import gymnasium as gym

    algo = prefzoo.make_algo("wind", gym.make(ENV, **env_kwargs), seed=1, **{**cfg["hyperparams"], "device": "cpu"})
    algo.load(reference / "checkpoints" / "iter_000300.pt")
    np.testing.assert_allclose(np.load(reference / "policy.npy"), algo.policy_probs())
    assert algo.evaluate()["game/exploitability"] == pytest.approx(float(rows[-1]["game/exploitability"]))


def test_tensorboard_holds_the_csv_scalars_and_hparams(reference):
    assert_tensorboard_matches_csv(reference)
    acc = EventAccumulator(str(reference), size_guidance={"tensors": 0})
    acc.Reload()
    assert acc.PluginTagToContent("hparams"), "no hparams summary"
    text = acc.Tensors("config/hyperparameters/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "|beta|0.2|" in text and "|env_kwargs.n_contexts|3|" in text


def test_same_command_same_progress_csv(reference, tiny_configs, tmp_path):
    run_prefzoo(tiny_configs, tmp_path, *TRAIN)
    again = read_csv(only_run(tmp_path / "logs") / "progress.csv")
    first = read_csv(reference / "progress.csv")
    assert without_wall_time(again) == without_wall_time(first)


def _start_and_wait_for(tiny_configs: Path, cwd: Path, checkpoint: str) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen(prefzoo_cmd(*TRAIN, "--no-progress"), cwd=cwd, env=prefzoo_env(tiny_configs),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = list((cwd / "logs" / "wind").glob("*_1"))
        if runs and (runs[0] / "checkpoints" / checkpoint).exists():
            assert proc.poll() is None, "the run finished before it could be interrupted"
            return proc, runs[0]
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"no {checkpoint} within 60 s: {proc.stderr.read()[-2000:]}")


def _last_logged_iteration(run_dir: Path) -> int:
    """The last complete progress.csv row's iteration (0 while the writer is mid-line)."""
    try:
        return int(float(read_csv(run_dir / "progress.csv")[-1]["time/iterations"]))
    except (ValueError, KeyError, IndexError, TypeError):
        return 0


def test_killed_run_resumes_to_the_same_metrics(reference, tiny_configs, tmp_path):
    proc, run_dir = _start_and_wait_for(tiny_configs, tmp_path, "iter_000020.pt")
    deadline = time.monotonic() + 60  # let it log past the checkpoint: those rows must be dropped on resume
    while _last_logged_iteration(run_dir) <= 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait()
    last = max(rundir.checkpoints(run_dir))
    assert last < 300 and not (run_dir / "policy.npy").exists()
    assert int(read_csv(run_dir / "progress.csv")[-1]["time/iterations"]) > last
    proc = run_prefzoo(tiny_configs, tmp_path, "train", "--resume", str(run_dir))
    assert "resuming" in proc.stderr
    assert without_wall_time(read_csv(run_dir / "progress.csv")) == \
        without_wall_time(read_csv(reference / "progress.csv"))
    np.testing.assert_array_equal(np.load(run_dir / "policy.npy"), np.load(reference / "policy.npy"))
    assert_tensorboard_matches_csv(run_dir)  # events written after the checkpoint are purged


def test_ctrl_c_checkpoints_then_resume_latest(reference, tiny_configs, tmp_path):
    proc, run_dir = _start_and_wait_for(tiny_configs, tmp_path, "iter_000010.pt")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr  # an interrupted run is not a finished one
    assert "interrupted at iteration" in stderr
    last = max(rundir.checkpoints(run_dir))
    assert last < 300 and int(read_csv(run_dir / "progress.csv")[-1]["time/iterations"]) == last
    run_prefzoo(tiny_configs, tmp_path, *TRAIN, "--resume")  # the latest run of wind on ENV
    assert without_wall_time(read_csv(run_dir / "progress.csv")) == \
        without_wall_time(read_csv(reference / "progress.csv"))
    assert torch.load(run_dir / "checkpoints" / "iter_000300.pt", weights_only=True)["state"]["iteration"] == 300
