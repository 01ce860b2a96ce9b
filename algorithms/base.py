"""The thin base every prefzoo algorithm shares: the game check, the learn loop, metrics, save/load.

A subclass declares what it needs of a game — the game kinds it plays (``supported_games``; by
default every game whose payoff is its pairwise preference), its modes (``exact`` mode needs a game
with exact services) and whether its sample mode reads every response (``needs_enumeration``) — and
the base checks those declarations against the game's own (``game.kind``, ``game.pairwise``,
``game.exact``, ``game.enumerable``) once (:func:`unmet_need`). It implements ``step()`` (one
iteration, returning its training diagnostics) and sets up its state in ``__init__``; in
``exact`` mode the state is a numpy policy ``self.pi`` [X, Y], in ``sample`` mode a torch policy
``self.policy`` trained with ``self.optimizer``. Metrics come from the exact game (design §6),
never from the algorithm's own samples; a game without exact services reports its own estimates
(``game.estimate_metrics``) besides the costs, which are read from the game's counters.
"""

from __future__ import annotations

import copy
import os
import pickle
import time
import zipfile
from typing import Any, Callable, ClassVar

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.logger import Logger

from prefzoo.envs import duel, metrics
from prefzoo.envs.checks import check_choice, check_int, check_real
from prefzoo.envs.lm.oracles import OracleBudgetExhausted
from prefzoo.envs.oracle import PreferenceOracle, kl_divergence

from .policies import POLICIES, make_policy

MODES = ("exact", "sample")
CHECKPOINT_FORMAT = 3  # data only (tensors and plain Python values), loaded with weights_only=True; 3: + the game's counters
_NDARRAY = "__ndarray__"  # marks a numpy array stored as a tensor in a checkpoint


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
    declarations (``kind``, ``pairwise``, ``exact``, ``enumerable``) do not offer, or None."""
    kinds = algorithm.supported_games
    if not (game.kind in kinds if kinds else game.pairwise):
        return (f"plays games of kind {' / '.join(kinds)}" if kinds
                else "plays games whose payoff is the pairwise preference")
    if (mode == "exact" or algorithm.needs_exact) and not game.exact:
        return (f"in {mode} mode reads the game's exact services (a dense P, its solvers, expectations over every "
                "response)")
    if algorithm.needs_enumeration and not game.enumerable:
        return (f"in {mode} mode with these settings reads every response's probability or the whole policy "
                "each iteration")
    return None


def plays(algorithm: Algorithm | type[Algorithm], game: PreferenceOracle) -> bool:
    """Whether ``algorithm`` plays ``game`` in at least one of its modes."""
    return any(unmet_need(algorithm, game, mode) is None for mode in algorithm.supported_modes)
class CheckpointError(ValueError):
    """A file that is not a readable prefzoo checkpoint (empty, truncated, corrupted or foreign)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that holds objects other than tensors and plain data (it could run code when
    unpickled); it is refused, never unpickled."""


def to_checkpoint_data(value: Any) -> Any:
    """``value`` with every numpy array turned into a marked tensor and numpy scalars into Python
    ones, so that ``torch.load(weights_only=True)`` can read it back (:func:`from_checkpoint_data`)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("a checkpoint holds numeric arrays only, not object arrays")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: to_checkpoint_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_checkpoint_data(item) for item in value)
    return value


def from_checkpoint_data(value: Any) -> Any:
    """Inverse of :func:`to_checkpoint_data`."""
    if isinstance(value, dict):
        if set(value) == {_NDARRAY}:
            return value[_NDARRAY].numpy().copy()
        return {key: from_checkpoint_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_checkpoint_data(item) for item in value)
    return value


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The state stored by :meth:`Algorithm.save`, read with ``torch.load(weights_only=True)``:
    only tensors and plain Python data are unpickled, so a crafted file cannot run code.

    Raises:
        UnsafeCheckpointError: the file asks to unpickle anything else (refused, nothing ran).
        CheckpointError: an empty, truncated or corrupted file, or not a prefzoo checkpoint.
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a readable checkpoint (empty, truncated or not written by torch.save)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "Weights only load failed" in str(err):
            raise UnsafeCheckpointError(
                f"{path} holds objects other than tensors and plain data (it could run code when loaded); "
                "refusing to load it. prefzoo checkpoints are data only") from None
        raise CheckpointError(f"{path} is not a readable checkpoint ({err})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupted: {str(err).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a prefzoo checkpoint of format {CHECKPOINT_FORMAT} (found {found!r})")
    return from_checkpoint_data(state)


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
    """

    supported_modes: ClassVar[tuple[str, ...]] = MODES
    # game kinds (``game.kind``) the algorithm's loss is meant for; None: every game whose payoff is
    # its pairwise preference (``game.pairwise``), whatever its kind, so a new kind of preference game
    # is played without editing the algorithms
    supported_games: ClassVar[tuple[str, ...] | None] = None
    needs_enumeration: bool = False  # sample mode too reads every response (a dense P, all log-probs, π each step)
    needs_exact: ClassVar[bool] = False  # sample mode too uses the game's exact services (e.g. its solvers)
    trains_policy: ClassVar[bool] = True  # sample mode trains a torch policy (False: it computes ``self.pi``)

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

    def _check_game(self, mode: str) -> None:
        """Refuse a game whose declarations do not meet this algorithm's (:func:`unmet_need`)."""
        need = unmet_need(self, self.game, mode)
        if need is None:
            return
        from . import ALGORITHMS  # the registry imports this module

        game = self.game
        players = [key for key, cls in ALGORITHMS.items() if plays(cls, game)]
        raise ValueError(f"{type(self).__name__} {need}, but this game ({type(game).__name__}) is of kind "
                         f"{game.kind!r} with pairwise={game.pairwise}, exact={game.exact}, "
                         f"enumerable={game.enumerable}; algorithms that play it (default settings): {players}")

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
        if self.game.exact:
            self.duel_regret.add(self.game.P, contexts, y, y2)
        return wins.astype(np.float64)

    def sample_batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` contexts from ρ and one response each from the current policy, per column."""
        contexts = self.game.sample_contexts(n, self.rng)
        return contexts, self.sample_responses(contexts)

    def sample_responses(self, contexts: np.ndarray) -> np.ndarray:
        self.samples += len(contexts)
        return self.policy.sample(contexts, self.rng)

    def snapshot(self) -> torch.nn.Module:
        """A frozen copy of the current torch policy (π_t for the next update)."""
        frozen = copy.deepcopy(self.policy)
        frozen.requires_grad_(False)
        return frozen

    def fit(self, loss_fn: Callable[[], torch.Tensor]) -> float:
        """``grad_steps`` Adam steps on ``loss_fn()``; returns the last loss."""
        for _ in range(self.grad_steps):
            self.optimizer.zero_grad()
            loss = loss_fn()
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

    def tensor(self, array, dtype=torch.float32) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=dtype, device=self.device)

    def evaluate(self) -> dict[str, float]:
        """The exact metrics of design §6 for the current policy. On a game without exact services
        (``game.exact`` False, e.g. a :class:`~prefzoo.envs.token.TokenOracle`) the ``game/``
        metrics are off: the game's own estimates (:meth:`~prefzoo.envs.oracle.PreferenceOracle.estimate_metrics`,
        drawn with a generator of their own so that evaluating never changes training) and the costs.
        KLs are computed in log space (:func:`~prefzoo.envs.oracle.kl_divergence`), so a probability
        below float64's range does not make them infinite."""
        costs = {metrics.QUERIES: self.queries, metrics.SAMPLES: self.samples, metrics.WALL_S: self.wall_s}
        game = self.game
        if not game.exact:
            return {**game.estimate_metrics(self.policy, np.random.default_rng([self.seed, self.iteration])), **costs}
        pi, log_pi = self.policy_probs(), self.policy_log_probs()
        out = {
            metrics.EXPLOITABILITY: game.exploitability(pi),
            metrics.KL_TO_REF: game.expectation(kl_divergence(log_pi, self.log_ref)),
            metrics.WIN_RATE_VS_REF: game.expectation(game.win_rate(pi, game.ref)),
            metrics.WIN_RATE_VS_NASH: game.expectation(game.win_rate(pi, game.nash(0.0))),
            **costs,
        }
        if self.regularization() > 0:
            out[metrics.REG_EXPLOITABILITY] = game.exploitability(pi, self.regularization())
        target = self.target_policy()
        if target is not None:
            with np.errstate(divide="ignore"):
                out[metrics.KL_TO_TARGET] = game.expectation(kl_divergence(np.log(target), log_pi))
        if self.duel_regret.pairs:
            out[metrics.DUEL_WEAK_REGRET], out[metrics.DUEL_STRONG_REGRET] = self.duel_regret.averages()
        return out

    def learn(self, iterations: int, callback: Callable[["Algorithm", dict], bool | None] | None = None,
              eval_freq: int = 1) -> "Algorithm":
        """Run ``iterations`` more iterations, logging the exact metrics every ``eval_freq``.

        ``callback(algo, metrics)`` runs after each evaluation; returning ``False`` stops early.
        """
        iterations, eval_freq = check_int("iterations", iterations, low=0), check_int("eval_freq", eval_freq, low=1)
        for _ in range(iterations):
            start = time.perf_counter()
            rng_state, samples = copy.deepcopy(self.rng.bit_generator.state), self.samples
            try:
                diagnostics = self.step()
            except OracleBudgetExhausted:  # undo the unfinished iteration's draws: a resumed run redoes it exactly
                self.rng.bit_generator.state, self.samples = rng_state, samples
                raise
            self.wall_s += time.perf_counter() - start
            self.iteration += 1
            if self.iteration % eval_freq == 0:
                values = {**self.evaluate(), **(diagnostics or {})}
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
        for name in self._extra_state:
            value = getattr(self, name)
            state[name] = value.state_dict() if isinstance(value, torch.nn.Module) else copy.deepcopy(value)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
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
        for name in self._extra_state:
            current = getattr(self, name)
            if isinstance(current, torch.nn.Module):
                current.load_state_dict(state[name])
            else:
                setattr(self, name, state[name])

    def save(self, path: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
        """Write a data-only checkpoint atomically (a temporary file, fsynced, then renamed):
        tensors and plain Python values only (:func:`to_checkpoint_data`), so it loads with
        ``torch.load(weights_only=True)``. ``meta`` (plain data) is stored beside the state."""
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        data = {"format": CHECKPOINT_FORMAT, "meta": dict(meta or {}), "state": self.state_dict()}
        with open(tmp, "wb") as f:
            torch.save(to_checkpoint_data(data), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike) -> "Algorithm":
        """Restore a checkpoint written by :meth:`save` into this (identically built) algorithm.

        Raises:
            UnsafeCheckpointError, CheckpointError: see :func:`read_checkpoint` (nothing is loaded).
        """
        self.load_state_dict(read_checkpoint(path)["state"])
        return self
