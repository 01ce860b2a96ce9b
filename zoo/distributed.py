"""Training one run across processes on Hugging Face ``accelerate``: ``prefzoo train --nproc N`` or
``accelerate launch --num_processes N -m prefzoo train …``.

The rules (``nproc`` = 1, the default, imports nothing of this and changes no number):

- **Launch.** ``prefzoo train --nproc N`` outside a launcher runs the same command in N processes
  through accelerate's own launcher (:func:`launch`: ``accelerate.commands.launch``, i.e. torchrun's
  agent on a free local port). Under a launcher (``WORLD_SIZE`` > 1 in the environment, as
  ``accelerate launch`` and torchrun set it) the processes train one run together and the run's
  ``nproc`` is their number; an ``nproc`` given otherwise (flag, ``--hp``, config file) must equal it.
  On CPU the processes talk through gloo, on GPUs through NCCL (one GPU per process). Only DDP:
  an accelerate config that asks for FSDP or DeepSpeed (sharded weights) is refused, since each
  process samples from the whole model.
- **Supported.** GRPO, online DPO and online IPO on ``prefzoo/LMGame-v0`` with ``policy="hf"``
  (:func:`check_supported`); ``nproc`` divides ``batch_size``.
- **Shards.** Each iteration the run's generator (the same in every process: the checkpoint's)
  draws one seed s, and process r draws its ``batch_size / nproc`` prompts (GRPO: whole groups),
  samples and scores them with a generator seeded ``[s, r]``: a run repeats, and resumes exactly.
- **Gradients** go through ``accelerator.prepare(model, optimizer)`` (DDP) and ``accelerator.backward``:
  the average of the processes' gradients. Each process's loss is a mean over its equal shard
  (GRPO's ``grpo`` and ``dr_grpo`` aggregations, rewards centred and scaled within each group;
  online DPO / IPO's mean), so the average is the full batch's gradient. GRPO's ``dapo`` (a mean
  over the batch's tokens) and ``scale_rewards="batch"`` need batch-wide sums and are refused.
- **Counters are global.** After each process has scored its shard, the processes sum what they
  counted (queries, samples, the oracle's calls and cache hits, the budget spent) and share the
  oracle's new cached answers, so every process holds the run's totals. Of the budget left
  (``max_queries``) each process may spend its share in an iteration, so the run never spends past
  it; a budget spent or a judge failed in any process stops every process at that iteration.
- **One writer.** The main process alone evaluates, logs, checkpoints and exports; the others write
  nothing. At the end every process waits for the others and leaves the process group
  (:meth:`Processes.close`); then the others exit 0 and the main process's exit code is the run's (a
  launcher terminates the processes still running when one exits non-zero). A resume: the main process
  picks the checkpoint, every process loads it.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import torch

from prefzoo.algorithms import ALGORITHMS
from prefzoo.algorithms.base import resolve_device
from prefzoo.envs.judges import JudgeError
from prefzoo.envs.oracle import BudgetExhausted
from prefzoo.zoo.config import ConfigError, RunConfig

SUPPORTED = ("grpo", "online_dpo", "online_ipo")  # algorithms whose loss is a mean over equal shards
WORLD_ENV = "WORLD_SIZE"  # the number of processes, set by accelerate's launcher and torchrun
COUNTERS = (("algo", "queries"), ("algo", "samples"), ("game", "queries"), ("game", "exact_calls"),
            ("game", "spent"), ("oracle", "calls"), ("oracle", "cache_hits"))
STOPS = (BudgetExhausted, JudgeError)
DATA_PARALLEL = ("MULTI_CPU", "MULTI_GPU")  # accelerate's DDP kinds (not FSDP, DeepSpeed: sharded weights)
# what accelerate's launcher sets from a config or flag asking for sharded weights; on CPU accelerate itself
# ignores them and trains DDP (1.16: FSDP and DeepSpeed only on accelerator devices), so they are read here
SHARDED = {"ACCELERATE_USE_FSDP": "FSDP", "ACCELERATE_USE_DEEPSPEED": "DeepSpeed"}


def world_size() -> int:
    """The processes a launcher started (``WORLD_SIZE``); 1 outside a launcher."""
    return int(os.environ.get(WORLD_ENV, "1"))


def run_nproc(nproc: int, world: int) -> int:
    """The ``nproc`` of a run under a launcher of ``world`` processes: ``world``.

    Raises:
        ConfigError: ``nproc`` is neither 1 (not given) nor ``world``.
    """
    if nproc not in (1, world):
        raise ConfigError(f"nproc={nproc}, but the launcher started {world} processes; give --nproc {world} "
                          "or leave nproc out under a launcher")
    return world


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m prefzoo <argv>`` in ``nproc`` processes on this machine through accelerate's
    launcher (what ``accelerate launch --multi_gpu --num_processes N -m prefzoo …`` runs: torchrun's
    agent, here on a free local port); returns 0, or the exit code of the lowest-ranked process that failed.

    Raises:
        ConfigError: accelerate is not installed (the ``[dist]`` extra).
    """
    try:
        from accelerate.commands.launch import launch_command, launch_command_parser
    except ImportError as err:
        raise ConfigError(f"nproc={nproc} needs accelerate: pip install 'prefzoo[dist]'") from err
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = launch_command_parser().parse_args(
        ["--multi_gpu", "--num_processes", str(nproc), "--num_machines", "1", "--mixed_precision", "no",
         "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "--module", "prefzoo", *argv])
    try:
        launch_command(args)
    except ChildFailedError as err:
        return min(err.failures.items())[1].exitcode
    return 0


def check_supported(algo, nproc: int) -> None:
    """``ConfigError`` naming ``nproc`` unless ``algo`` trains across ``nproc`` processes (module docstring)."""
    name = next((key for key, cls in ALGORITHMS.items() if type(algo) is cls), type(algo).__name__)
    policy = algo.policy
    if name not in SUPPORTED or getattr(policy, "set_data_parallel", None) is None:
        raise ConfigError(f"nproc={nproc}: training across processes supports {', '.join(SUPPORTED)} on "
                          f"prefzoo/LMGame-v0 with policy='hf'; got {name} with a {type(policy).__name__}")
    if algo.batch_size % nproc:
        raise ConfigError(f"nproc={nproc} must divide batch_size={algo.batch_size}: each process takes "
                          "batch_size/nproc prompts" + (" (larger than the batch)" if nproc > algo.batch_size else ""))
    refused = {"loss_type": "dapo", "scale_rewards": "batch"}  # batch-wide sums, not a mean over shards
    for key, value in refused.items():
        if getattr(algo, key, None) == value:
            raise ConfigError(f"nproc={nproc}: {key}={value!r} needs sums over the whole batch; give nproc=1 "
                              f"or another {key}")
    if policy.grad_scaler is not None:
        raise ConfigError(f"nproc={nproc} does not combine with dtype='fp16' (not supported across processes yet)")


class Processes:
    """This process's place among a run's processes: accelerate's ``Accelerator`` (made before the
    algorithm, so that on GPUs each process takes its own device), its rank, and the collectives.

    Raises:
        ConfigError: accelerate is missing, or the launcher's processes are not ``cfg.nproc``.
    """

    def __init__(self, cfg: RunConfig):
        asked = [name for variable, name in SHARDED.items() if os.environ.get(variable, "false").lower() == "true"]
        if asked:
            raise ConfigError(f"nproc={cfg.nproc}: accelerate's {asked[0]} (from its config or flags) is not "
                              "supported; prefzoo trains with DDP: every process holds the whole model, which its "
                              "sampling reads (on CPU accelerate would train DDP in its place without saying so)")
        try:
            from accelerate import Accelerator
        except ImportError as err:
            raise ConfigError(f"nproc={cfg.nproc} needs accelerate: pip install 'prefzoo[dist]'") from err
        try:
            cpu = resolve_device(cfg.hyperparams.get("device", "cpu")).type == "cpu"
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self.accelerator = Accelerator(cpu=cpu)
        self.rank, self.nproc = self.accelerator.process_index, self.accelerator.num_processes
        self.is_main = self.accelerator.is_main_process
        if self.nproc != cfg.nproc:
            raise ConfigError(f"nproc={cfg.nproc}, but accelerate sees {self.nproc} processes")
        kind = self.accelerator.distributed_type.value
        if kind not in DATA_PARALLEL:
            raise ConfigError(f"nproc={cfg.nproc}: accelerate's {kind} (from its config) is not supported; prefzoo "
                              f"trains with DDP ({', '.join(DATA_PARALLEL)}): every process holds the whole model, "
                              "which its sampling reads")

    def broadcast(self, value):
        """The main process's ``value`` (plain picklable data), in every process."""
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def close(self) -> None:
        """Wait for every process, then tear the process group down: no process exits while another may
        still use it (once, under load, a process that exited first with the group still up aborted: SIGABRT)."""
        self.accelerator.wait_for_everyone()
        torch.distributed.destroy_process_group()

    def attach(self, algo) -> None:
        """Make ``algo`` train with the others: check it (:func:`check_supported`), wrap its model and
        optimizer with ``accelerator.prepare`` and set its :class:`Engine`."""
        check_supported(algo, self.nproc)
        model, algo.optimizer = self.accelerator.prepare(algo.policy.model, algo.optimizer)
        algo.policy.set_data_parallel(model)
        algo.engine = Engine(self)


class Engine:
    """The per-iteration rules of the module docstring, called by ``Algorithm.learn`` and ``fit``."""

    def __init__(self, processes: Processes):
        self.processes = processes
        self.accelerator = processes.accelerator
        self._before: np.ndarray | None = None  # the global counters when the step began
        self._cache_mark = 0  # the oracle's cache size when the step began
        self._agreed = True

    # ------------------------------------------------------------------ counters
    @staticmethod
    def _owners(algo) -> dict[str, object]:
        return {"algo": algo, "game": algo.game, "oracle": algo.game.oracle}

    def _counters(self, algo) -> np.ndarray:
        owners = self._owners(algo)
        return np.array([getattr(owners[owner], name) for owner, name in COUNTERS], dtype=np.int64)

    def _set_counters(self, algo, values) -> None:
        owners = self._owners(algo)
        for (owner, name), value in zip(COUNTERS, values, strict=True):
            setattr(owners[owner], name, int(value))

    def _share_cache(self, algo) -> None:
        """Every process's new cached oracle answers, in every process's cache."""
        from accelerate.utils import gather_object

        oracle = algo.game.oracle
        oracle.add_answers(gather_object(oracle.answers_since(self._cache_mark)))

    # ------------------------------------------------------------------ one iteration
    def step(self, algo) -> dict[str, float]:
        """``algo.step()`` on this process's shard: the run's generator draws a seed s, the step draws
        from ``default_rng([s, rank])`` with ``batch_size / nproc`` prompts and its share of the budget
        left; the generator, batch size and budget are restored after it."""
        game, shared, batch_size, budget = algo.game, algo.rng, algo.batch_size, algo.game.max_queries
        self._before, self._cache_mark, self._agreed = self._counters(algo), game.oracle.cache_size, False
        seed = int(shared.integers(2**63))
        rank, nproc = self.processes.rank, self.processes.nproc
        algo.rng, algo.batch_size = np.random.default_rng([seed, rank]), batch_size // nproc
        if budget is not None:
            left = budget - game.spent
            game.max_queries = game.spent + left // nproc + (rank < left % nproc)
        try:
            diagnostics = algo.step()
            self.before_fit(algo)  # a step without a gradient step still agrees
            return diagnostics
        except STOPS as err:
            if not self._agreed:
                self._agree(algo, err)
            if isinstance(err, BudgetExhausted):  # the run's budget, not this process's share of it
                raise BudgetExhausted.of(type(game).__name__, game.spent, budget, f"across {nproc} processes (each "
                                         "spends at most its share of what is left in an iteration)") from err
            raise
        finally:
            algo.rng, algo.batch_size, game.max_queries = shared, batch_size, budget

    def before_fit(self, algo) -> None:
        """Once per step, before its first gradient: :meth:`_agree` that every process scored its shard."""
        if not self._agreed:
            self._agree(algo, None)

    def _agree(self, algo, error: Exception | None) -> None:
        """Sum the processes' counts since the step began into the global counters, share the new
        cached answers, and raise in every process where one of them stopped (``error``)."""
        self._agreed = True
        failed = [isinstance(error, BudgetExhausted), isinstance(error, JudgeError)]
        local = torch.as_tensor(np.array([*failed, *(self._counters(algo) - self._before)]),
                                device=self.accelerator.device)
        total = self.accelerator.reduce(local, reduction="sum").cpu().numpy()
        self._set_counters(algo, self._before + total[2:])
        self._share_cache(algo)
        if error is None and total[0]:
            raise BudgetExhausted("another process's share of the budget was spent")  # worded by step
        if error is None and total[1]:
            raise JudgeError("the judge failed in another process (its error is in that process's output)")

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def evaluate(self, algo) -> dict[str, float]:
        """The main process's ``algo.evaluate()`` ({} elsewhere); then every process holds the main's
        counters (its evaluation's oracle calls included), and an oracle stop there stops all."""
        metrics, error = {}, None
        if self.processes.is_main:
            try:
                metrics = algo.evaluate()
            except STOPS as err:
                error = err
        counters, stopped = self.processes.broadcast(
            (self._counters(algo).tolist(), None if error is None else (type(error).__name__, str(error))))
        self._set_counters(algo, counters)
        if error is not None:
            raise error
        if stopped is not None:
            raise (BudgetExhausted if stopped[0] == BudgetExhausted.__name__ else JudgeError)(stopped[1])
        return metrics
