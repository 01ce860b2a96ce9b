"""Trustworthy runs (issue 13): data-only checkpoints, resume that validates and refuses a changed
config, one writer per run directory, corrupted-checkpoint fallback, Ctrl-C, CLI usage errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from zoo_helpers import ENV, prefzoo_cmd, prefzoo_env, read_csv

import prefzoo
from prefzoo.algorithms.checkpoint import UnsafeCheckpointError
from prefzoo.zoo import rundir, runner
from prefzoo.zoo.cli import main


def cli(*args: str) -> int:
    """Run ``prefzoo`` in this process; its exit code (0 when it returns)."""
    try:
        main(list(args))
    except SystemExit as exit_:
        return exit_.code
    return 0


def train_tiny(log_folder: Path, *extra: str, iterations: int = 4) -> Path:
    code = cli("train", "--algo", "wind", "--env", ENV, "--iterations", str(iterations), "--save-freq", "2",
               "--log-folder", str(log_folder), "--no-progress", *extra)
    assert code == 0
    return rundir.latest_run_dir(log_folder, "wind", ENV)


@pytest.fixture(autouse=True)
def tiny(tiny_configs, monkeypatch):
    monkeypatch.setenv("PREFZOO_CONFIG_DIR", str(tiny_configs))


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name != rundir.LOCK_FILE}


# ---------------------------------------------------------------------- item 1: security
class Payload:
    """Unpickling it calls ``open(marker, "w")``: a file appears if the pickle ever runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def crafted_checkpoint(path: Path, marker: Path) -> Path:
    """A checkpoint that looks like prefzoo's (format, meta, state) with a payload inside."""
    torch.save({"format": 2, "meta": {}, "state": {"class": "WIND", "pi": Payload(marker)}}, path)
    return path


def test_a_crafted_checkpoint_runs_nothing_on_any_path(tmp_path, capsys):
    # control: the payload is live (plain torch.load would run it)
    live = tmp_path / "live_marker"
    torch.load(crafted_checkpoint(tmp_path / "control.pt", live), weights_only=False)
    assert live.exists()

    run_dir = train_tiny(tmp_path / "logs", iterations=4)
    marker = tmp_path / "marker"
    evil = crafted_checkpoint(run_dir / "checkpoints" / "iter_000004.pt", marker)  # the latest one
    # 1. Algorithm.load
    algo = prefzoo.make_algo("wind", ENV, mode="sample")
    with pytest.raises(UnsafeCheckpointError, match="holds objects other than tensors and plain data"):
        algo.load(evil)
    # 2. prefzoo train --resume (the latest checkpoint is the crafted one)
    assert cli("train", "--resume", str(run_dir), "--iterations", "6") == 2
    assert "refusing to load it" in capsys.readouterr().err
    # 3. prefzoo tournament --runs
    assert cli("tournament", "--runs", str(evil), "--out", str(tmp_path / "tour")) == 2
    assert "refusing to load it" in capsys.readouterr().err
    assert not marker.exists()


# ---------------------------------------------------------------------- item 2: resume validates
def test_resume_validates_the_stored_config_like_a_fresh_run(tmp_path, capsys, monkeypatch):
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    marker = tmp_path / "imported"
    (module_dir / "evilmod.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(module_dir))
    run_dir = train_tiny(tmp_path / "logs", iterations=2)
    cfg_path = run_dir / "config.yml"
    data = yaml.safe_load(cfg_path.read_text())
    for key, value, message in [("env_id", "evilmod:Evil-v0", "unknown env id 'evilmod:Evil-v0'"),
                                ("algo", "wnd", "unknown algorithm 'wnd'"),
                                ("hyperparams", {"betta": 0.2}, "unknown hyperparameter for wind"),
                                ("eval_freq", 0, "eval_freq must be an integer >= 1"),
                                ("colour", "red", "unknown run config key 'colour'")]:
        cfg_path.write_text(yaml.safe_dump({**data, key: value}))
        assert cli("train", "--resume", str(run_dir)) == 2
        assert message in capsys.readouterr().err
    cfg_path.write_bytes(os.urandom(256) + b"\xff\xfe")
    assert cli("train", "--resume", str(run_dir)) == 2
    assert "is not a readable YAML config" in capsys.readouterr().err
    assert not marker.exists()


# ---------------------------------------------------------------------- item 3: one writer
def test_a_second_writer_is_refused_naming_the_holders_pid(tmp_path, capsys):
    run_dir = train_tiny(tmp_path / "logs", iterations=2)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys; from prefzoo.zoo.rundir import run_lock\n"
        f"with run_lock({str(run_dir)!r}):\n    print('locked', flush=True); sys.stdin.readline()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run_dir)
        assert cli("train", "--resume", str(run_dir), "--iterations", "4") == 2
        assert f"is in use by another process (PID {holder.pid}" in capsys.readouterr().err
        assert snapshot(run_dir) == before
        cfg = rundir.load_run_config(run_dir)
        with pytest.raises(rundir.RunLockedError, match=str(holder.pid)):
            runner.train(cfg, run_dir, resume=True, progress=False)
    finally:
        holder.communicate("\n", timeout=30)
    cli("train", "--resume", str(run_dir), "--iterations", "4")  # the lock died with its holder
    assert rundir.intact_checkpoint(run_dir)[0] == 4


# ---------------------------------------------------------------------- item 4: changed config
def test_resume_refuses_a_changed_config_and_only_extends(tmp_path, capsys):
    run_dir = train_tiny(tmp_path / "logs", iterations=4)
    finished = snapshot(run_dir)
    assert cli("train", "--resume", str(run_dir), "--iterations", "2") == 2  # a shorter run
    assert "can only extend a run" in capsys.readouterr().err
    assert cli("train", "--resume", str(run_dir)) == 0  # finished: nothing to do
    assert "nothing to do" in capsys.readouterr().err
    assert snapshot(run_dir) == finished  # neither rewrote anything

    cfg_path = run_dir / "config.yml"
    original = cfg_path.read_text()
    data = yaml.safe_load(original)
    data["hyperparams"]["lr"], data["hyperparams"]["beta"] = 0.5, 0.3
    data["env_kwargs"]["n_actions"] = 4
    cfg_path.write_text(yaml.safe_dump(data))
    assert cli("train", "--resume", str(run_dir), "--iterations", "6") == 2
    err = capsys.readouterr().err
    assert "changed env_kwargs.n_actions, hyperparams.beta, hyperparams.lr" in err
    cfg_path.write_text(original)

    assert cli("train", "--resume", str(run_dir), "--iterations", "6", "--no-progress") == 0  # the legitimate change
    rows = read_csv(run_dir / "progress.csv")
    assert [int(float(r["time/iterations"])) for r in rows] == list(range(7))
    assert yaml.safe_load(cfg_path.read_text())["iterations"] == 6
    assert rundir.intact_checkpoint(run_dir)[0] == 6


# ---------------------------------------------------------------------- item 5: corrupted checkpoint
@pytest.mark.parametrize("damage", ["truncated", "empty", "random"])
def test_a_corrupted_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    reference = train_tiny(tmp_path / "ref", iterations=4)
    run_dir = train_tiny(tmp_path / "logs", iterations=4)
    latest = run_dir / "checkpoints" / "iter_000004.pt"
    raw = latest.read_bytes()
    latest.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"", "random": os.urandom(len(raw))}[damage])
    (run_dir / "policy.npy").unlink()  # as if killed before the end
    with pytest.warns(RuntimeWarning, match=r"iter_000004\.pt is not a readable checkpoint.*falling back"):
        result = runner.train(rundir.load_run_config(run_dir), run_dir, resume=True, progress=False)
    assert result["status"] == "done" and result["iteration"] == 4
    np.testing.assert_array_equal(np.load(run_dir / "policy.npy"), np.load(reference / "policy.npy"))


# ---------------------------------------------------------------------- item 6: Ctrl-C
def terminal_sigint():
    """SIGINT as in a terminal (a test runner started in the background may inherit it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, timeout=120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_ctrl_c_during_compare_keeps_the_finished_runs_and_stops_the_workers(tmp_path, tiny_configs):
    out = tmp_path / "cmp"
    proc = subprocess.Popen(prefzoo_cmd("compare", "--algos", "wind", "--env", ENV, "--seeds", "0", "1", "2",
                                        "--workers", "1", "--iterations", "400", "--out", str(out), "--no-progress"),
                            cwd=tmp_path, env=prefzoo_env(tiny_configs), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=terminal_sigint)
    logs = out / "logs" / "wind"
    wait_for(lambda: len(list(logs.glob("*/policy.npy"))) >= 1)  # one run finished, the next is training
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGINT)  # a second Ctrl-C must not leave the workers training
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    finished = sorted(p.parent for p in logs.glob("*/policy.npy"))
    assert 1 <= len(finished) < 3
    table = (out / "table.md").read_text()
    assert f"Interrupted (Ctrl-C): {len(finished)} of 3 runs finished" in table and "| wind |" in table
    unfinished = [p for p in logs.iterdir() if p not in finished and (p / "progress.csv").is_file()]
    sizes = {p: (p / "progress.csv").stat().st_size for p in unfinished}
    time.sleep(2.0)
    assert {p: (p / "progress.csv").stat().st_size for p in unfinished} == sizes  # no worker left training


def test_ctrl_c_during_train_checkpoints_and_exits_non_zero(tmp_path, tiny_configs):
    proc = subprocess.Popen(prefzoo_cmd("train", "--algo", "wind", "--env", ENV, "--iterations", "100000",
                                        "--no-progress"),
                            cwd=tmp_path, env=prefzoo_env(tiny_configs), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, preexec_fn=terminal_sigint)
    progress = tmp_path / "logs" / "wind" / f"{rundir.env_dirname(ENV)}_1" / "progress.csv"
    wait_for(lambda: progress.is_file() and progress.stat().st_size > 2000)
    os.kill(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "checkpoint saved" in stderr
    assert rundir.intact_checkpoint(progress.parent)[0] is not None


# ---------------------------------------------------------------------- item 11: CLI
def test_hp_numbers_are_read_as_a_user_means_them(tmp_path):
    run_dir = train_tiny(tmp_path / "logs", "--hp", "lr=1e-3", "batch_size=1E1", iterations=1)
    hyperparams = yaml.safe_load((run_dir / "config.yml").read_text())["hyperparams"]
    assert hyperparams["lr"] == 1e-3 and hyperparams["batch_size"] == 10


@pytest.mark.parametrize("args,message", [
    (("--hp", "lr=nan"), "lr must be a finite number > 0, got nan"),
    (("--hp", "beta=inf"), "beta must be a finite number > 0, got inf"),
    (("--hp", "grad_steps=0.5"), "grad_steps must be an integer >= 1, got 0.5"),
    (("--hp", "device=tpu"), "device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    (("--hp", "device=cpu", "--device", "cuda"), "device given twice: --device cuda and --hp device=cpu"),
    (("--config-dir", "no/such/dir"), "--config-dir 'no/such/dir' is not a directory"),
])
def test_train_usage_errors_exit_2_with_one_line_and_leave_no_run(tmp_path, capsys, args, message):
    logs = tmp_path / "logs"
    code = cli("train", "--algo", "wind", "--env", ENV, "--iterations", "2", "--log-folder", str(logs), *args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (logs / "wind").exists() or not any((logs / "wind").iterdir())  # no half-written run


@pytest.mark.parametrize("args,message", [
    (("train", "--algo", "wind", "--env", ENV, "--threads", "-1"), "argument --threads: expected an integer >= 0"),
    (("train", "--algo", "wind", "--env", ENV, "--iterations", "2.5"), "argument --iterations: expected an integer"),
    (("compare", "--algos", "wind", "--env", ENV, "--workers", "0"), "argument --workers: expected an integer >= 1"),
    (("compare", "--algos", "wind", "--env", ENV, "--seeds", "-3"), "argument --seeds: expected an integer >= 0"),
])
def test_bad_flags_are_usage_errors(capsys, args, message):
    assert cli(*args) == 2
    assert message in capsys.readouterr().err


def test_binary_config_existing_file_out_and_read_only_folder(tmp_path, capsys):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "wind.yml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    assert cli("train", "--algo", "wind", "--env", ENV, "--config-dir", str(configs),
               "--log-folder", str(tmp_path / "logs")) == 2
    assert "wind.yml is not a text YAML file (it is not valid UTF-8)" in capsys.readouterr().err
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli("compare", "--algos", "wind", "--env", ENV, "--out", str(afile)) == 2
    assert f"--out {afile} exists and is not a directory" in capsys.readouterr().err
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if os.access(readonly, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        assert cli("train", "--algo", "wind", "--env", ENV, "--log-folder", str(readonly / "logs")) == 2
        assert "--log-folder" in capsys.readouterr().err
        assert cli("tournament", "--runs", "x.npy", "--out", str(readonly)) == 2
        assert f"--out {readonly} is not writable" in capsys.readouterr().err
    finally:
        readonly.chmod(0o700)


@pytest.mark.parametrize("content", ["garbage", "nan", "shape"])
def test_tournament_refuses_a_bad_policy_file(tmp_path, capsys, content):
    run_dir = train_tiny(tmp_path / "logs", iterations=1)
    policy = run_dir / "policy.npy"
    if content == "garbage":
        policy.write_bytes(os.urandom(64))
    else:
        pi = np.load(policy)
        np.save(policy, np.full_like(pi, np.nan) if content == "nan" else pi[:, :2])
    assert cli("tournament", "--runs", str(run_dir), "--out", str(tmp_path / "tour")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and {"garbage": "is not a policy array", "nan": "must be finite",
                                           "shape": "must be a policy of shape"}[content] in err


def test_a_run_that_fails_midway_is_marked_failed(tmp_path, monkeypatch):
    cfg = prefzoo.zoo.config.resolve("wind", ENV, 0, {"iterations": 3}, device="cpu")
    calls = {"n": 0}
    original = prefzoo.algorithms.wind.WIND.step

    def failing_step(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise FloatingPointError("boom")
        return original(self)

    monkeypatch.setattr(prefzoo.algorithms.wind.WIND, "step", failing_step)
    run_dir = tmp_path / "run"
    with pytest.raises(FloatingPointError):
        runner.train(cfg, run_dir, progress=False)
    assert (run_dir / rundir.FAILED_FILE).read_text() == "FloatingPointError: boom\n"


INT_FLAGS = {"train": {"--seed": 0, "--iterations": 1, "--eval-freq": 1, "--save-freq": 0, "--threads": 0},
             "compare": {"--seeds": 0, "--workers": 1, "--budget": 1, "--iterations": 1, "--eval-freq": 1,
                         "--threads": 0},
             "demo": {"--workers": 1, "--budget": 1, "--threads": 0}}
REQUIRED = {"train": ("--algo", "wind", "--env", ENV), "compare": ("--algos", "wind", "--env", ENV), "demo": ()}
FLAG_CASES = [(cmd, flag, value) for cmd, flags in INT_FLAGS.items() for flag, low in flags.items()
              for value in ("nan", "inf", "-1", "2.5", "abc", "") + (("0",) if low == 1 else ())]


@pytest.mark.parametrize("cmd,flag,value", FLAG_CASES, ids=[f"{c}{f}={v!r}" for c, f, v in FLAG_CASES])
def test_every_integer_flag_refuses_bad_values_with_exit_2(tmp_path, capsys, cmd, flag, value):
    assert cli(cmd, *REQUIRED[cmd], flag, value, "--no-progress") == 2
    assert f"argument {flag}: expected an integer >= {INT_FLAGS[cmd][flag]}" in capsys.readouterr().err


@pytest.mark.parametrize("linked", [rundir.LOCK_FILE, "progress.csv"])
def test_resume_refuses_a_run_directory_holding_a_link_and_the_target_is_untouched(tmp_path, capsys, linked):
    run_dir = train_tiny(tmp_path / "logs", iterations=2)
    target = tmp_path / "elsewhere.txt"
    target.write_text("someone else's file\n")
    (run_dir / linked).unlink()
    (run_dir / linked).symlink_to(target)
    assert cli("train", "--resume", str(run_dir), "--iterations", "4") == 2
    assert f"{run_dir / linked} is a symbolic link" in capsys.readouterr().err
    assert target.read_text() == "someone else's file\n"


def test_a_data_only_checkpoint_that_expands_through_shared_lists_is_refused_before_expansion(tmp_path, capsys):
    """Nine levels of one list shared ten times: a small file that weights_only=True accepts and that
    would expand to 10^9 values; it is refused before anything is expanded (tracemalloc's peak stays
    small), and a resume skips it for the previous intact checkpoint."""
    import tracemalloc

    import torch

    from prefzoo.algorithms.checkpoint import CHECKPOINT_FORMAT, CheckpointError, read_checkpoint

    nested = [0] * 10
    for _ in range(8):
        nested = [nested] * 10
    path = tmp_path / "bomb.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "meta": {}, "state": {"pi": nested}}, path)
    assert path.stat().st_size < 4096
    tracemalloc.start()
    with pytest.raises(CheckpointError, match=r"expands to [\d,]+ values through shared references"):
        read_checkpoint(path)
    assert tracemalloc.get_traced_memory()[1] < 20 * 2**20
    tracemalloc.stop()
    run_dir = train_tiny(tmp_path / "logs", iterations=2)  # the bomb as a run's latest checkpoint: skipped
    (run_dir / "checkpoints" / "iter_000003.pt").write_bytes(path.read_bytes())
    with pytest.warns(RuntimeWarning, match="expands to 1,111,111,115 values through shared references"):
        assert cli("train", "--resume", str(run_dir), "--iterations", "4") == 0
    assert "from iteration 2" in capsys.readouterr().err
