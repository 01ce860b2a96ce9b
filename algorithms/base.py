"""The thin base every prefzoo algorithm shares: the game check, the learn loop, metrics, save/load.

A subclass declares what it needs of a game — the policy families it supports
(``supported_responses``), the payoffs its loss is for (``supported_payoffs``), its modes (``exact``
mode needs a game with exact services and a response table) and whether its sample mode reads every
response each iteration (``reads_every_response``) — and the base checks those declarations against
the game's own (``responses``, ``payoff``, ``exact``, ``listed``; :mod:`prefzoo.envs.oracle`) once
(:func:`unmet_need`). It implements ``step()`` (one iteration, returning its training diagnostics)
and sets up its state in ``__init__``; in ``exact`` mode the state is a numpy policy ``self.pi``
[X, Y], in ``sample`` mode a torch policy ``self.policy`` trained with ``self.optimizer``. Metrics
come from the game (``game.evaluate``: exact where it has exact services, estimates otherwise),
never from the algorithm's own samples; the costs are read from the game's counters.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.logger import Logger

from prefzoo.envs import duel, metrics
from prefzoo.envs.answer_token import CandidatePolicy, FiniteStatePolicy, SampledPolicy
from prefzoo.envs.checks import check_choice, check_int, check_real
from prefzoo.envs.judges import JudgeError
from prefzoo.envs.oracle import (
    MAX_LISTED_READ,
    RESPONSES,
    BudgetExhausted,
    PreferenceOracle,
    TablePolicy,
    declarations,
    kl_divergence,
)

from .checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from .policies import POLICIES, make_policy

MODES = ("exact", "sample")
LR_SCHEDULES = ("constant", "linear", "cosine")
# the optimization keywords every algorithm's constructor takes (keyword only; Algorithm.__init_subclass__)
OPTIMIZATION = {"max_grad_norm": 0.0, "warmup_steps": 0, "lr_schedule": "constant", "lr_schedule_steps": 0}


def lr_factor(step: int, schedule: str, warmup_steps: int, schedule_steps: int) -> float:
    """The learning-rate multiplier at optimizer step ``step`` (0 the first): ``step / warmup_steps``
    during the warmup, then 1 (``"constant"``) or a linear / half-cosine decay from 1 to 0 at step
    ``schedule_steps``, 0 after it; the factors of transformers' ``get_scheduler``
    (``constant_with_warmup``, ``linear``, ``cosine``)."""
    if step < warmup_steps:
        return step / warmup_steps
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, schedule_steps - warmup_steps))
    return 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` → CUDA when available, else CPU; otherwise ``cpu``, ``cuda`` or ``cuda:N``."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    device = parsed
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return device


def as_env(env: str | gym.Env) -> gym.Env:
    """Make ``env`` when it is an id (closest-match error on a typo)."""
    if isinstance(env, str):
        import prefzoo  # noqa: F401  (registers the ids)

        if env not in gym.registry:
            check_choice("env id", env, [k for k in gym.registry if k.startswith("prefzoo/")])
        return gym.make(env)
    return env


def unmet_need(algorithm: Algorithm | type[Algorithm], game: PreferenceOracle, mode: str) -> str | None:
    """What ``algorithm`` (a class, or an instance with its settings) needs in ``mode`` that ``game``'s
    declarations (``responses``, ``payoff``, ``exact``, ``listed``) do not offer, or None."""
    if game.responses not in algorithm.supported_responses:
        return f"plays games whose responses are {' / '.join(algorithm.supported_responses)}"
    if game.payoff not in algorithm.supported_payoffs:
        return f"plays games whose payoff is {' / '.join(algorithm.supported_payoffs)}"
    if mode == "exact" and not (game.exact and game.listed):
        return "in exact mode reads the game's exact services over its response table"
    if algorithm.reads_every_response and not game.table_readable:
        return (f"in {mode} mode with these settings reads every response's probability or the whole policy "
                f"each iteration (listed responses, at most {MAX_LISTED_READ:,} per context)")
    return None


def plays(algorithm: Algorithm | type[Algorithm], game: PreferenceOracle) -> bool:
    """Whether ``algorithm`` plays ``game`` in at least one of its modes."""
    return any(unmet_need(algorithm, game, mode) is None for mode in algorithm.supported_modes)


class Algorithm:
    """Base class: ``learn`` → ``step`` per iteration, ``evaluate`` from the exact game.

    Args:
        env: an env id or a made env whose ``unwrapped.game`` is a
            :class:`~prefzoo.envs.oracle.PreferenceOracle` (every prefzoo game is one).
        seed: seeds the algorithm's numpy generator and the torch initialization.
        mode: ``"exact"`` (closed-form tabular update from exact expectations) or ``"sample"``
            (counted comparisons only; a torch policy trained by gradient steps).
        policy: sample-mode policy, ``"tabular"`` or ``"mlp"`` (over context features).
        lr: Adam learning rate of the sample-mode policy.
        batch_size: contexts (prompts) drawn per sample-mode iteration.
        grad_steps: Adam steps on each iteration's batch.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Every subclass's constructor also takes these keyword-only optimization settings of sample mode's
    torch policy (:meth:`set_optimization`, :meth:`fit`): ``max_grad_norm`` (0: no clipping),
    ``warmup_steps`` (0), ``lr_schedule`` (``"constant"``, ``"linear"`` or ``"cosine"``) and
    ``lr_schedule_steps`` (the decay's length in optimizer steps, past the warmup; linear and cosine
    need it, constant takes none).
    """

    supported_modes: ClassVar[tuple[str, ...]] = MODES
    # the policy families (``game.responses``) it trains, and the payoffs (``game.payoff``) its loss is
    # for: a new game whose declarations match is played without editing the algorithms
    supported_responses: ClassVar[tuple[str, ...]] = RESPONSES
    supported_payoffs: ClassVar[tuple[str, ...]] = ("preference",)
    reads_every_response: bool = False  # sample mode too reads every response (a dense P, all log-probs, π)
    trains_policy: ClassVar[bool] = True  # sample mode trains a torch policy (False: it computes ``self.pi``)
    # the engine of a run across processes (prefzoo.zoo.distributed.Engine: each process steps on its share of
    # the batch, gradients averaged by accelerate); None: this process alone, every number as without it
    engine: Any = None

    def __init__(self, env: str | gym.Env, seed: int = 0, mode: str = "exact", policy: str = "tabular",
                 lr: float = 0.05, batch_size: int = 64, grad_steps: int = 20, device: str = "cpu"):
        if mode not in self.supported_modes:
            raise ValueError(f"{type(self).__name__} supports mode in {self.supported_modes}, got {mode!r}")
        seed = check_int("seed", seed, low=0)
        lr = check_real("lr", lr, 0, low_open=True)
        batch_size, grad_steps = check_int("batch_size", batch_size, low=1), check_int("grad_steps", grad_steps, low=1)
        check_choice("policy", policy, POLICIES)
        self.env = as_env(env)
        self.game: PreferenceOracle = self.env.unwrapped.game
        self._check_game(mode)
        self.seed, self.mode = seed, mode
        self.lr, self.batch_size, self.grad_steps = lr, int(batch_size), int(grad_steps)
        self.device = resolve_device(device)
        self.rng = np.random.default_rng(seed)
        self.iteration = 0
        self.queries = 0  # this run's oracle comparisons
        self.samples = 0  # this run's responses drawn from the policy
        self.wall_s = 0.0
        self.duel_regret = duel.QueriedRegret()  # regret of the compared pairs (exact games)
        self.logger = Logger(folder=None, output_formats=[])
        self.pi = None if self.game.ref is None else self.game.ref.copy()  # exact-mode state
        with np.errstate(divide="ignore"):  # log π_ref [X, Y], of the exact steps and the metrics' KLs
            self.log_ref = None if self.game.ref is None else np.log(self.game.ref)
        self.policy = self.optimizer = None
        if mode == "sample" and self.trains_policy:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                self.policy = make_policy(policy, self.game, self.device)
            self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.optimizer_steps = 0  # the run's optimizer steps, which the learning-rate schedule reads
        self.set_optimization(**OPTIMIZATION)

    def __init_subclass__(cls, **kwargs):
        """Give the subclass's own ``__init__`` the keyword-only :data:`OPTIMIZATION` settings (in its
        signature too, which configs check keys against), applied by :meth:`set_optimization` once
        it has run: one place for them, whatever the algorithm's own keywords."""
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, max_grad_norm=0.0, warmup_steps=0, lr_schedule="constant",
                     lr_schedule_steps=0, **kw):
            init(self, *args, **kw)
            self.set_optimization(max_grad_norm, warmup_steps, lr_schedule, lr_schedule_steps)

        signature = inspect.signature(init)
        extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                 for name, default in OPTIMIZATION.items()]
        __init__.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
        cls.__init__ = __init__

    def set_optimization(self, max_grad_norm: float = 0.0, warmup_steps: int = 0,
                         lr_schedule: str = "constant", lr_schedule_steps: int = 0) -> None:
        """Check and set the :data:`OPTIMIZATION` settings :meth:`fit` applies.

        Raises:
            TypeError, ValueError: a bad value (named), ``lr_schedule_steps`` missing for a decay, not
                past the warmup, or given for a constant rate, or a setting other than the default
                where no torch policy is trained.
        """
        given = {"max_grad_norm": max_grad_norm, "warmup_steps": warmup_steps, "lr_schedule": lr_schedule,
                 "lr_schedule_steps": lr_schedule_steps}
        changed = [name for name, value in given.items() if value != OPTIMIZATION[name]]
        if changed and self.optimizer is None:
            raise ValueError(f"{changed[0]} sets the optimizer of sample mode's torch policy; {type(self).__name__} "
                             f"in {self.mode} mode trains none")
        self.max_grad_norm = check_real("max_grad_norm", max_grad_norm, 0)
        self.lr_schedule = check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        self.warmup_steps = check_int("warmup_steps", warmup_steps, low=0)
        self.lr_schedule_steps = check_int("lr_schedule_steps", lr_schedule_steps, low=0)
        if lr_schedule == "constant" and self.lr_schedule_steps:
            raise ValueError(f"lr_schedule_steps={lr_schedule_steps} is the length of a linear or cosine decay; "
                             "lr_schedule='constant' takes none")
        if lr_schedule != "constant" and self.lr_schedule_steps <= self.warmup_steps:
            raise ValueError(f"lr_schedule={lr_schedule!r} decays to 0 over lr_schedule_steps optimizer steps: give "
                             f"lr_schedule_steps > warmup_steps={self.warmup_steps}, got {lr_schedule_steps}")

    def _check_game(self, mode: str) -> None:
        """Refuse a game whose declarations do not meet this algorithm's (:func:`unmet_need`)."""
        need = unmet_need(self, self.game, mode)
        if need is None:
            return
        from . import ALGORITHMS  # the registry imports this module

        game = self.game
        players = [key for key, cls in ALGORITHMS.items() if plays(cls, game)]
        declared = ", ".join(f"{k}={v!r}" for k, v in declarations(type(game)).items())
        raise ValueError(f"{type(self).__name__} {need}, but this game ({type(game).__name__}) declares {declared}"
                         f"{f' with {game.n_actions:,} responses per context' if game.listed else ''}; "
                         f"algorithms that play it (default settings): {players}")

    # ------------------------------------------------------------------ to implement
    def step(self) -> dict[str, float]:
        """One iteration; returns training diagnostics (e.g. ``{"train/loss": …}``)."""
        raise NotImplementedError

    def target_policy(self) -> np.ndarray | None:
        """The algorithm's own exact limit point (for ``game/kl_to_target``), or None."""
        return None

    def regularization(self) -> float:
        """β of the regularized game max_π min_π' P(π≻π') − βKL(π‖π_ref) + βKL(π'‖π_ref) the algorithm
        solves, where ``game/reg_exploitability`` is measured; 0 (default): the unregularized game."""
        return 0.0

    # ------------------------------------------------------------------ shared plumbing
    def policy_probs(self) -> np.ndarray:
        """Current policy [X, Y]."""
        return self.pi.copy() if self.mode == "exact" else self.policy.probs()

    def policy_log_probs(self) -> np.ndarray:
        """log π [X, Y], read by the metrics' KLs; an algorithm whose state is in log space
        returns it, so a probability below float64's range stays finite there."""
        with np.errstate(divide="ignore"):
            return np.log(self.policy_probs())

    def set_logger(self, logger: Logger) -> None:
        self.logger = logger

    def compare(self, contexts, y, y2) -> np.ndarray:
        """Counted Bernoulli comparisons through the game's oracle (float 0/1)."""
        before = self.game.queries
        wins = self.game.compare(contexts, y, y2, self.rng)
        self.queries += self.game.queries - before
        if self.exact_preference:
            self.duel_regret.add(self.game.P, contexts, y, y2)
        return wins.astype(np.float64)

    def read_rewards(self, contexts, responses) -> np.ndarray:
        """The game's counted rewards r(x, y) (a ``has_reward`` game), each one of this run's queries."""
        before = self.game.queries
        rewards = self.game.rewards(contexts, responses)
        self.queries += self.game.queries - before
        return rewards

    def sample_batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` contexts from ρ and one response each from the current policy, per column."""
        contexts = self.game.sample_contexts(n, self.rng)
        return contexts, self.sample_responses(contexts)

    def sample_pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``batch_size`` contexts x from ρ and two responses y, y' ~ π to each, in one batched draw
        (one generate call on an LM; the same draws as two calls)."""
        x = self.game.sample_contexts(self.batch_size, self.rng)
        y, y2 = self.sample_responses(np.concatenate([x, x])).reshape(2, -1)
        return x, y, y2

    def duel_tensors(self, x, y, y2) -> tuple[torch.Tensor, torch.Tensor]:
        """[x; x] and [y; y'] as tensors: the batch of a loss that labels both sides of each duel."""
        return self.tensor(np.concatenate([x, x]), torch.long), self.tensor(np.concatenate([y, y2]), torch.long)

    def sample_responses(self, contexts: np.ndarray) -> np.ndarray:
        self.samples += len(contexts)
        return self.policy.sample(contexts, self.rng)

    def snapshot(self) -> torch.nn.Module:
        """A frozen copy of the current torch policy (π_t for the next update)."""
        frozen = copy.deepcopy(self.policy)
        frozen.requires_grad_(False)
        return frozen

    def frozen_log_probs(self, xs: torch.Tensor, ys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π_t(y|x), log π_ref(y|x)) [n] under the current torch policy, both without gradient:
        the fixed anchor and reference terms of a sample-mode loss, read once before ``fit``."""
        with torch.no_grad():
            return self.policy.log_prob(xs, ys), self.policy.ref_log_prob(xs, ys)

    def fit(self, loss_fn: Callable[[], torch.Tensor]) -> float:
        """``grad_steps`` optimizer steps on ``loss_fn()``; returns the last loss. Each gradient is
        scaled by the policy's ``grad_scaler`` where it has one (fp16) and unscaled before the step,
        clipped to total 2-norm ``max_grad_norm`` where it is > 0 (``clip_grad_norm_``; the norm before
        clipping is logged as ``train/grad_norm``), and stepped at each group's learning rate times
        :func:`lr_factor` of the run's optimizer steps, the group's own rate restored afterwards (so an
        algorithm's own decay of it composes with the schedule). Under an :attr:`engine` (several processes)
        the backward is accelerate's, so the gradient stepped is the processes' average."""
        scaler = getattr(self.policy, "grad_scaler", None)
        groups = self.optimizer.param_groups
        if self.engine is not None:
            self.engine.before_fit(self)  # every process has its share of the batch scored (or all stop)
        for _ in range(self.grad_steps):
            self.optimizer.zero_grad()
            loss = loss_fn()
            scaled = loss if scaler is None else scaler.scale(loss)
            if self.engine is None:
                scaled.backward()
            else:
                self.engine.backward(scaled)
            if scaler is not None:
                scaler.unscale_(self.optimizer)
            if self.max_grad_norm:
                norm = torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], self.max_grad_norm)
                self.logger.record("train/grad_norm", float(norm))
            rates = [group["lr"] for group in groups]
            factor = lr_factor(self.optimizer_steps, self.lr_schedule, self.warmup_steps, self.lr_schedule_steps)
            for group in groups:
                group["lr"] *= factor
            if scaler is None:
                self.optimizer.step()
            else:
                scaler.step(self.optimizer)
            for group, rate in zip(groups, rates, strict=True):
                group["lr"] = rate
            if scaler is not None:
                scaler.update()
            self.optimizer_steps += 1
        return float(loss.detach())

    def tensor(self, array, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=self.device)

    @property
    def exact_preference(self) -> bool:
        """The game's exact preference services apply (a P over a response table, ``nash``,
        ``exploitability``): the algorithm-specific exact metrics are logged."""
        game = self.game
        return game.exact and game.listed and game.payoff == "preference"

    def evaluation_policy(self) -> Any:
        """What the game evaluates: a :class:`~prefzoo.envs.oracle.TablePolicy` of the current
        policy where the responses are listed and the game is exact or no torch policy is trained;
        else the trained policy's ``game_view()`` where it has one (the form the game's services
        take, e.g. a :class:`~prefzoo.envs.answer_token.FiniteStatePolicy`), else the policy (a sampler)."""
        if self.game.listed and (self.game.exact or self.policy is None):
            return TablePolicy(self.policy_probs(), self.policy_log_probs())
        game_view = getattr(self.policy, "game_view", None)
        return self.policy if game_view is None else game_view()

    def export(self, run_dir: str | os.PathLike) -> list[Path]:
        """Write the final policy into ``run_dir`` by the policy's own ``export``: a table
        (``policy.npy``) where the game's responses are listed, else the trained policy's artifact
        (a language model: ``hf_policy/``). Returns the paths written."""
        policy = TablePolicy(self.policy_probs()) if self.game.listed else self.policy
        return policy.export(run_dir)

    def evaluate(self) -> dict[str, float]:
        """The game's metrics of the current policy (``game.evaluate``, drawing from a generator of
        its own so that evaluating never changes training), the costs, and, where the game's exact
        preference services apply to the policy (a table, or a finite-state policy of a game exact
        at any size), the metrics of the algorithm's own game (design §6): the regularized
        exploitability, KL(π_target‖π) from its exact limit point, the duel regrets. KLs are
        computed in log space (:func:`~prefzoo.envs.oracle.kl_divergence`)."""
        game, policy = self.game, self.evaluation_policy()
        out = {**game.evaluate(policy, np.random.default_rng([self.seed, self.iteration])),
               metrics.QUERIES: self.queries, metrics.SAMPLES: self.samples, metrics.WALL_S: self.wall_s}
        answer_level = isinstance(policy, (FiniteStatePolicy, CandidatePolicy))
        if isinstance(policy, SampledPolicy) and self.target_policy() is not None:
            out[metrics.EST_KL_TO_TARGET], out[metrics.EST_KL_TO_TARGET_SE] = game.kl_estimate(
                self.target_policy(), policy, np.random.default_rng([self.seed, self.iteration, 1]))
        if not (self.exact_preference or answer_level):
            return out
        if self.regularization() > 0:
            out[metrics.REG_EXPLOITABILITY] = game.exploitability(policy if answer_level else policy.table,
                                                                  self.regularization())
        target = self.target_policy()
        if target is not None and answer_level:
            out[metrics.ANSWER_KL_TO_TARGET] = game.answer_kl(target, policy)
            if isinstance(policy, FiniteStatePolicy):  # a candidate policy's support is finite: KL(π*‖π) = ∞
                out[metrics.KL_TO_TARGET] = game.kl(target, policy)
        elif target is not None:
            with np.errstate(divide="ignore"):
                out[metrics.KL_TO_TARGET] = game.expectation(kl_divergence(np.log(target), policy.log_table))
        out.update(self.duel_regret.averages())
        return out

    def run_evaluation(self) -> dict[str, float]:
        """What a run logs: :meth:`evaluate`, or under an :attr:`engine` the engine's (the main
        process's evaluation, its counters shared with every process)."""
        return self.evaluate() if self.engine is None else self.engine.evaluate(self)

    def learn(self, iterations: int, callback: Callable[["Algorithm", dict], bool | None] | None = None,
              eval_freq: int = 1) -> "Algorithm":
        """Run ``iterations`` more iterations, logging the exact metrics every ``eval_freq``.

        ``callback(algo, metrics)`` runs after each evaluation; returning ``False`` stops early. Under an
        :attr:`engine` each iteration and evaluation is the engine's (its shard per process, the main process's
        evaluation).
        """
        iterations, eval_freq = check_int("iterations", iterations, low=0), check_int("eval_freq", eval_freq, low=1)
        for _ in range(iterations):
            start = time.perf_counter()
            rng_state, samples = copy.deepcopy(self.rng.bit_generator.state), self.samples
            try:
                diagnostics = self.step() if self.engine is None else self.engine.step(self)
            except (BudgetExhausted, JudgeError):  # undo the unfinished iteration's draws: a resume redoes it exactly
                self.rng.bit_generator.state, self.samples = rng_state, samples
                raise
            self.wall_s += time.perf_counter() - start
            self.iteration += 1
            if self.iteration % eval_freq == 0:
                values = {**self.run_evaluation(), **(diagnostics or {})}
                for key, value in values.items():
                    self.logger.record(key, value)
                self.logger.record(metrics.ITERATIONS, self.iteration)
                self.logger.dump(step=self.iteration)
                if callback is not None and callback(self, values) is False:
                    break
        return self

    # ------------------------------------------------------------------ persistence
    _extra_state: ClassVar[tuple[str, ...]] = ()  # subclass attributes to save besides the policy

    def state_dict(self) -> dict[str, Any]:
        state = {"class": type(self).__name__, "iteration": self.iteration, "queries": self.queries,
                 "samples": self.samples, "wall_s": self.wall_s, "pi": self.pi,
                 "rng": self.rng.bit_generator.state, "duel_regret": self.duel_regret.state(),
                 "game": self.game.counter_state()}
        if self.policy is not None:
            state["policy"] = self.policy.state_dict()
            state["optimizer"] = self.optimizer.state_dict()
            state["optimizer_steps"] = self.optimizer_steps
        for name in self._extra_state:
            value = getattr(self, name)
            state[name] = value.state_dict() if isinstance(value, torch.nn.Module) else copy.deepcopy(value)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`.

        Raises:
            CheckpointError: a state of another algorithm, or one whose parts do not fit this algorithm
                and game (missing keys, wrong types or shapes, invalid cached answers).
        """
        try:
            self._load_state(state)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as err:
            raise CheckpointError(f"the checkpoint's state does not fit {type(self).__name__} on "
                                  f"{type(self.game).__name__}: {type(err).__name__}: {err}") from None

    def _load_state(self, state: dict[str, Any]) -> None:
        if state["class"] != type(self).__name__:
            raise ValueError(f"checkpoint holds a {state['class']}, not a {type(self).__name__}")
        self.iteration, self.queries, self.samples = state["iteration"], state["queries"], state["samples"]
        self.wall_s, self.pi = state["wall_s"], state["pi"]
        self.rng.bit_generator.state = state["rng"]
        self.duel_regret.load(state["duel_regret"])
        self.game.load_counter_state(state["game"])
        if self.policy is not None:
            self.policy.load_state_dict(state["policy"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.optimizer_steps = state.get("optimizer_steps", 0)  # older checkpoints: a constant rate
        for name in self._extra_state:
            current = getattr(self, name)
            if isinstance(current, torch.nn.Module):
                current.load_state_dict(state[name])
            else:
                setattr(self, name, state[name])

    def save(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        """Write a data-only checkpoint atomically
        (:func:`~prefzoo.algorithms.checkpoint.write_checkpoint`), so it loads with
        ``torch.load(weights_only=True)``. ``meta`` (plain data) is stored beside the state."""
        write_checkpoint(path, {"meta": dict(meta or {}), "state": self.state_dict()})

    def load(self, path: str | os.PathLike) -> "Algorithm":
        """Restore a checkpoint written by :meth:`save` into this (identically built) algorithm.

        Raises:
            UnsafeCheckpointError, CheckpointError: see
                :func:`~prefzoo.algorithms.checkpoint.read_checkpoint` (nothing is loaded).
        """
        self.load_state_dict(read_checkpoint(path)["state"])
        return self
