"""Execution backends for sweeps of runs: a local process pool and Ray, both with retries that resume.

A :class:`Task` is one ``train`` run (a resolved config, its run directory, an optional query
budget). A backend runs tasks in parallel and returns one :class:`Outcome` per task. A run whose
worker process dies (e.g. SIGKILL, out of memory) or raises is resubmitted up to ``retries`` times;
every attempt after the first resumes from the run's last checkpoint (``runner.train(resume=True)``),
which ends with the same metrics as an uninterrupted run. Runs that still fail come back with
their error instead of a result.

The local backend keeps ``workers`` spawned processes, each with its own pipe to the parent, so a
dying worker takes only its own run with it (a ``ProcessPoolExecutor`` breaks as a whole). The Ray
backend (extra ``[ray]``, imported only when chosen) runs each task as a Ray task with
``num_cpus=1``; run directories must then be on a filesystem every node sees.

A backend is a context manager: ``with make_backend(...) as backend:`` stops what it started (the
local workers, a local Ray instance) however the block ends (:meth:`Backend.close`).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_any
from multiprocessing.process import BaseProcess
from typing import Any, Callable, ClassVar

from prefzoo.envs import metrics as metric_names
from prefzoo.zoo.config import ConfigError

DEFAULT_RETRIES = 2
BACKENDS = ("local", "ray")
PROGRESS_EVERY_S = 0.2  # a worker reports its run's progress at most this often
RAY_CONNECT_TIMEOUT_S = 10  # an unreachable --address, or one that is not Ray, fails after this long
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes(3) + b"\x04" + bytes(5)  # + an empty SETTINGS frame
RAY_OBJECT_STORE_BYTES = 80 * 1024**2  # runs return small dicts; Ray's minimum is 75 MiB

Progress = Callable[[str, float, str, float], None]  # (key, queries, headline metric, its value)


@dataclasses.dataclass
class Task:
    """One run of a sweep: ``runner.train(RunConfig.from_dict(cfg), run_dir, budget=budget)``."""

    key: str
    cfg: dict[str, Any]
    run_dir: str
    budget: int | None = None
    imports: tuple[str, ...] = ()  # modules that register the env id (:func:`prefzoo.envs.registering_modules`)


@dataclasses.dataclass
class Outcome:
    """What became of a task: ``result`` (``runner.train``'s dict) or the last ``error``, and the
    errors of the attempts that were retried."""

    key: str
    result: dict[str, Any] | None = None
    error: str | None = None
    retried: list[str] = dataclasses.field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.retried) + 1


def execute(task: Task, attempt: int, report: Callable[[dict[str, float], str], None] | None = None) -> dict[str, Any]:
    """Run one attempt of a task in the current process (attempts after the first resume)."""
    from prefzoo.envs import import_modules
    from prefzoo.zoo import runner
    from prefzoo.zoo.config import RunConfig

    import_modules(task.imports)
    return runner.train(RunConfig.from_dict(task.cfg), task.run_dir, resume=attempt > 0, progress=False,
                        verbose=False, budget=task.budget, report=report, handle_sigint=False,
                        command=f"prefzoo compare (run {task.key}, attempt {attempt + 1})")


def check_retries(retries: int) -> int:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"--retries must be a non-negative integer, got {retries!r}")
    return retries


def _short_error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _retry(outcome: Outcome, attempt: int, retries: int, error: str) -> bool:
    """Record a failed attempt in ``outcome``; whether to run it again (``retries`` not spent)."""
    if attempt < retries:
        outcome.retried.append(error)
        return True
    outcome.error = error
    return False


def _progress_fields(metrics: dict[str, float], headline: str) -> tuple[float, str, float]:
    """What a :data:`Progress` callback gets of a run's metrics: (queries, headline, its value)."""
    return metrics.get(metric_names.QUERIES, 0), headline, metrics.get(headline, float("nan"))


class Backend(abc.ABC):
    """Runs a sweep's tasks in parallel. Use it as a context manager: leaving the ``with`` block
    calls :meth:`close`, which stops whatever the backend started."""

    name: ClassVar[str]

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the runs go, for the sweep's first line (``4 local workers``)."""

    @abc.abstractmethod
    def run(self, tasks: list[Task], retries: int = DEFAULT_RETRIES, progress: Progress | None = None) -> list[Outcome]:
        """One outcome per task, in order; a failed attempt is resumed up to ``retries`` times."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop what the backend started (idempotent)."""


# ---------------------------------------------------------------------- local processes
def _reporter(conn, key: str) -> Callable[[dict[str, float], str], None]:
    """Send ``("progress", key, queries, headline, value)`` at most every :data:`PROGRESS_EVERY_S`."""
    last = [0.0]

    def report(metrics: dict[str, float], headline: str) -> None:
        now = time.monotonic()
        if now - last[0] > PROGRESS_EVERY_S:
            last[0] = now
            conn.send(("progress", key, *_progress_fields(metrics, headline)))

    return report


def _worker_main(conn) -> None:
    """A local worker: receive ``(task, attempt)``, send progress and ``("done"|"error", key, …)``;
    exit on ``None`` or when the parent's end of the pipe is gone."""
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        task, attempt = message
        try:
            conn.send(("done", task.key, execute(task, attempt, _reporter(conn, task.key))))
        except Exception as exc:  # noqa: BLE001 - any failure of a run is reported, then retried
            print(f"run {task.key} (attempt {attempt + 1}) failed:\n{traceback.format_exc()}", file=sys.stderr)
            conn.send(("error", task.key, _short_error(exc)))


@dataclasses.dataclass
class Worker:
    """One spawned worker process, the parent's end of its pipe, and the attempt it runs."""

    process: BaseProcess
    conn: Connection
    job: tuple[int, int] | None = None  # (task index, attempt); None while idle


class LocalBackend(Backend):
    """``workers`` spawned processes (one torch thread each); a dead worker is replaced.

    The workers are started as needed and kept between :meth:`run` calls; :meth:`close` (the end
    of the ``with`` block) stops them, and so does a :meth:`run` that raises (Ctrl-C included),
    so that no run goes on behind the caller's back."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.pool: list[Worker] = []  # the started workers, busy or idle

    def describe(self) -> str:
        return f"{self.workers} local worker{'s' * (self.workers > 1)}"

    def run(self, tasks: list[Task], retries: int = DEFAULT_RETRIES, progress: Progress | None = None) -> list[Outcome]:
        retries = check_retries(retries)
        outcomes = [Outcome(t.key) for t in tasks]  # by position: keys are labels, not ids
        todo = [(i, 0) for i in range(len(tasks))]  # (task index, attempt), run in order
        try:
            while todo or self._busy():
                self.pool = [w for w in self.pool if w.job is not None or w.process.is_alive()]
                while todo and len(self._busy()) < self.workers:
                    self._assign(tasks, todo.pop(0))
                busy = self._busy()
                wait_any([*(w.process.sentinel for w in busy), *(w.conn for w in busy)], timeout=1.0)
                for worker in busy:
                    i, attempt = worker.job
                    error = self._collect(worker, outcomes[i], progress)
                    if error is not None and _retry(outcomes[i], attempt, retries, error):
                        todo.insert(0, (i, attempt + 1))  # resume it first
        except BaseException:
            self.close()
            raise
        return outcomes

    def close(self) -> None:
        """Ask the idle workers to exit (2 s each at most), then terminate whatever still runs."""
        idle = [w for w in self.pool if w.job is None]
        for worker in idle:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in idle:
            worker.process.join(timeout=2)
        for worker in self.pool:
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
            worker.conn.close()
        self.pool = []

    def _busy(self) -> list[Worker]:
        return [w for w in self.pool if w.job is not None]

    def _assign(self, tasks: list[Task], job: tuple[int, int]) -> None:
        """Send attempt ``job`` to an idle worker, or to a new one."""
        worker = next((w for w in reversed(self.pool) if w.job is None), None)
        if worker is None:
            ctx = mp.get_context("spawn")
            parent, child = ctx.Pipe()
            worker = Worker(ctx.Process(target=_worker_main, args=(child,), daemon=True), parent)
            worker.process.start()
            child.close()
            self.pool.append(worker)
        i, attempt = job
        worker.conn.send((tasks[i], attempt))
        worker.job = job

    def _collect(self, worker: Worker, outcome: Outcome, progress: Progress | None) -> str | None:
        """Read what ``worker`` sent (progress is passed on); the error of its attempt when that
        failed or the worker died, else None (done: ``outcome.result`` set; or still running)."""
        try:
            while worker.conn.poll():
                kind, key, *payload = worker.conn.recv()
                if kind == "progress":
                    if progress is not None:
                        progress(key, *payload)
                    continue
                worker.job = None
                if kind == "done":
                    outcome.result = payload[0]
                    return None
                return payload[0]
        except (EOFError, OSError):
            pass  # the worker died: its exit code says how, below
        if worker.process.is_alive():
            return None
        worker.process.join()
        worker.conn.close()
        self.pool.remove(worker)
        code = worker.process.exitcode
        why = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit code {code}"
        return f"worker process died ({why})"


# ---------------------------------------------------------------------- Ray
def _import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs Ray: pip install 'prefzoo[ray]'") from None
    return ray


def _ray_execute(task: Task, attempt: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    return execute(task, attempt)


class RayBackend(Backend):
    """Each run a Ray task (``num_cpus=1``). Without ``address``: a local Ray instance with
    ``num_cpus`` CPUs (default: this machine's), no dashboard and a small object store."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address, self.num_cpus = address, num_cpus
        self.started = False

    def connect(self):
        ray = _import_ray()
        if self.address:
            self._check_reachable(self.address)
        if ray.is_initialized():  # e.g. a script or a test that started Ray itself
            return ray
        if self.address:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True)
        else:
            self.num_cpus = self.num_cpus or os.cpu_count() or 1
            ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False,
                     object_store_memory=RAY_OBJECT_STORE_BYTES, ignore_reinit_error=True)
            self.started = True
        return ray

    @staticmethod
    def _check_reachable(address: str) -> None:
        """Fail within :data:`RAY_CONNECT_TIMEOUT_S` when ``host:port`` (or ``ray://host:port``) is not
        a Ray cluster: no connection, or a server that does not answer as Ray's gRPC servers do (an
        HTTP/2 SETTINGS frame in reply to the HTTP/2 preface) — e.g. the dashboard's HTTP port, on
        which ``ray.init`` would wait without end. The error says what was found there."""
        import socket

        if address == "auto":
            return
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--address must be host:port, ray://host:port or 'auto', got {address!r}")
        try:
            with socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S) as conn:
                conn.sendall(HTTP2_PREFACE)
                reply = conn.recv(64)
        except TimeoutError:
            reply = None
        except OSError as err:
            raise ConfigError(f"cannot reach the Ray cluster at {address!r} ({err}); is `ray start --head` "
                              "running there, and is the port open?") from None
        if reply is not None and len(reply) >= 4 and reply[3] == 0x04:  # an HTTP/2 SETTINGS frame: gRPC
            return
        http = reply and (b"HTTP/" in reply or reply.lstrip().startswith(b"<"))  # a status line or an HTML page
        found = ("an HTTP/1 server (Ray's dashboard?)" if http else
                 f"a server that did not answer within {RAY_CONNECT_TIMEOUT_S} s" if reply is None else
                 f"a server that answered {reply[:16]!r}")
        raise ConfigError(f"{address!r} is not a Ray cluster: found {found}. --address is the head's GCS port "
                          "(6379 by default: `ray start --head` prints it) or ray://host:10001")

    def describe(self) -> str:
        ray = self.connect()
        cpus = int(ray.cluster_resources().get("CPU", 0))
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
        return f"{where} with {cpus} CPU{'s' * (cpus != 1)}"

    def close(self) -> None:
        """Shut down the local Ray instance this backend started (never a cluster, nor a Ray
        someone else started)."""
        if self.started:
            _import_ray().shutdown()
            self.started = False

    def run(self, tasks: list[Task], retries: int = DEFAULT_RETRIES, progress: Progress | None = None) -> list[Outcome]:
        retries = check_retries(retries)
        ray = self.connect()
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_execute)
        outcomes = [Outcome(t.key) for t in tasks]  # by position: keys are labels, not ids
        pending = {remote.remote(t, 0): (i, 0) for i, t in enumerate(tasks)}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in done:
                i, attempt = pending.pop(ref)
                task, outcome = tasks[i], outcomes[i]
                try:
                    outcome.result = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - RayTaskError, WorkerCrashedError, ...
                    cause = getattr(exc, "cause", None)
                    error = _short_error(cause) if isinstance(cause, BaseException) else _short_error(exc)
                    if _retry(outcome, attempt, retries, error.splitlines()[0]):
                        pending[remote.remote(task, attempt + 1)] = (i, attempt + 1)
                if progress is not None and outcome.result is not None:
                    progress(task.key, *_progress_fields(outcome.result["metrics"], outcome.result["headline"]))
        return outcomes


def make_backend(name: str = "local", *, workers: int | None = None, address: str | None = None) -> Backend:
    """The backend called ``name`` (``local`` or ``ray``); nothing is started until it is used.
    Use it as ``with make_backend(...) as backend:``."""
    if name == "local":
        if address:
            raise ConfigError("--address is for --backend ray")
        return LocalBackend(workers)
    if name == "ray":
        return RayBackend(address, num_cpus=None if address else workers)
    raise ConfigError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
