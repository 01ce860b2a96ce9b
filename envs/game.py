"""Exact preference games: a dense P on top of the counted oracle, and the exact services.

A preference game has contexts x (prompts) with distribution ρ and a feature vector each,
responses y ∈ {0..Y-1}, a reference policy π_ref(y|x) and, per context, a preference matrix
P[x, y, y'] = P(y ≻ y' | x) with P + Pᵀ = 1 (diagonal ½). :class:`PreferenceGame` is a
:class:`~prefzoo.envs.oracle.PreferenceOracle` (counted ``compare``/``prob``) that adds the
exact services — equilibria, exploitability, win rates — vectorized over contexts.

Notation: ``P(y ≻ π | x) = Σ_y' π(y'|x) P(y ≻ y'|x)``, i.e. ``P[x] @ pi[x]``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import numpy as np
from scipy.optimize import linprog
from scipy.special import expit, log_softmax, logsumexp, softmax

from . import metrics
from .checks import check_array, check_choice, check_int, check_memory, check_real
from .oracle import PreferenceOracle, TablePolicy, kl_divergence

FAMILIES = ("bt", "cyclic", "mixed", "reward_order")
_DENSE_COPIES = 5  # [X, Y, Y] float64 arrays alive at make_game's peak (measured, tests/envs/test_checks.py)
_CONTINUATION_BETA = 0.05  # below it, nash(β) warm-starts from nash(2β)
# above it, P(y ≻ π)/β moves no logit of π_ref by a float64 ulp: π*_β is π_ref to machine precision
_REF_LIMIT_BETA = 1.0 / np.finfo(np.float64).eps

# Per-family defaults of the bandit and token games: cyclic games need a weaker reward so the cycle
# decides the winner.
FAMILY_DEFAULTS = {
    "bt": {"reward_scale": 2.0, "cyclic_strength": 0.0},
    "cyclic": {"reward_scale": 1.0, "cyclic_strength": 3.0},
    "mixed": {"reward_scale": 4.0, "cyclic_strength": 0.0},
    "reward_order": {"reward_scale": 2.0, "cyclic_strength": 0.0},
}


def soft_best_response_value(win: np.ndarray, ref: np.ndarray, beta: float) -> np.ndarray:
    """β log Σ_y π_ref(y) exp(win(y)/β) per row: the value of the KL-regularized best response.

    For β < 1 it is M + β·logsumexp((win − M)/β) with M the largest win on π_ref's support, so that
    no exponent passes 0 and a β as small as 5e-324 gives M (the limit β → 0), not inf. For β ≥ 1
    it is m + β·log1p(Σ π_ref·expm1((win − m)/β)) with m = Σ π_ref·win, which keeps its O(1/β)
    excess over m when β is huge (β·logsumexp loses it to rounding times β)."""
    if beta < 1.0:
        top = np.where(ref > 0, win, -np.inf).max(axis=-1, keepdims=True)
        with np.errstate(over="ignore"):  # (win − M)/β → −∞: that term is 0
            return top[..., 0] + beta * logsumexp((win - top) / beta, b=ref, axis=-1)
    mean = np.einsum("...y,...y->...", ref, win)
    return mean + beta * np.log1p(np.einsum("...y,...y->...", ref, np.expm1((win - mean[..., None]) / beta)))


def reward_order_preference(reward: np.ndarray) -> np.ndarray:
    """The order a reward induces: P = 1{r(y) > r(y')} + ½·1{r(y) = r(y')}, [..., Y, Y] (ties allowed)."""
    diff = reward[..., :, None] - reward[..., None, :]
    return (diff > 0) + 0.5 * (diff == 0)


class PreferenceGame(PreferenceOracle):
    """A finite contextual preference game: a dense P, exact services and a counted oracle.

    Args:
        P: preference tensor [X, Y, Y] with ``P + P.transpose(0, 2, 1) == 1``.
        ref: reference policy π_ref [X, Y] (rows on the simplex).
        rho: context distribution [X].
        features: context feature vectors [X, d] (the observation of the bandit env).
        rewards: hidden reward [X, Y] where the family has one (``None`` for ``mixed``).
        family: name of the family that generated the game (informational).
        seed: seed of the game's own generator, used by :meth:`compare` when no ``rng`` is given.

    Raises:
        ValueError: if the shapes disagree, an array has NaN/inf, or P is not a preference tensor.
    """

    responses = "indexed"
    payoff = "preference"
    exact = True
    listed = True
    headline = metrics.EXPLOITABILITY

    def __init__(
        self,
        P: np.ndarray,
        ref: np.ndarray,
        rho: np.ndarray | None = None,
        features: np.ndarray | None = None,
        rewards: np.ndarray | None = None,
        family: str = "custom",
        seed: int | None = None,
    ):
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 3 or P.shape[1] != P.shape[2]:
            raise ValueError(f"P must have shape [X, Y, Y], got {P.shape}")
        if not (np.all(np.isfinite(P)) and np.allclose(P + P.transpose(0, 2, 1), 1.0, rtol=0, atol=1e-12)
                and P.min() >= 0 and P.max() <= 1):
            raise ValueError("P must satisfy P + P^T = 1 with entries in [0, 1]")
        super().__init__(P.shape[0], rho, features, ref, seed)
        self.P = P
        self.A = P - 0.5  # antisymmetric payoff of the zero-sum game
        self.rewards = None if rewards is None else check_array("rewards", rewards, P.shape[:2])
        self.family = family
        self._nash_cache: dict[float, np.ndarray] = {}
        self.newton_steps: dict[float, int] = {}  # per β > 0 solved: Newton steps it took (all rungs)

    def preference(self, x, y, y2) -> np.ndarray:
        return self.P[x, y, y2]

    def reward(self, x, y) -> np.ndarray:
        """Hidden reward r(x, y) of the families that have one (not ``mixed``)."""
        if self.rewards is None:
            raise ValueError(f"family {self.family!r} has no single hidden reward")
        return self.rewards[x, y]

    def win_rates(self, pi: np.ndarray) -> np.ndarray:
        """P(y ≻ π | x) for every response: [X, Y] (no validation, the hot-path form)."""
        return np.einsum("xij,xj->xi", self.P, pi)

    def win_rate(self, pi, mu) -> np.ndarray:
        """P(π ≻ μ | x) per context, [X]."""
        pi, mu = self.check_policy(pi, "pi"), self.check_policy(mu, "mu")
        return np.einsum("xi,xi->x", pi, self.win_rates(mu))

    def evaluate(self, policy: TablePolicy, rng: np.random.Generator | None = None) -> dict[str, float]:
        """Exact metrics of a table policy: exploitability (β = 0), KL(π‖π_ref) (in log space, so
        a probability below float64's range keeps it finite), and the win rates against π_ref and
        against a von Neumann winner, each ρ-weighted; ``rng`` is unused (nothing is sampled)."""
        pi = policy.table
        with np.errstate(divide="ignore"):
            kl_to_ref = kl_divergence(policy.log_table, np.log(self.ref))
        return {metrics.EXPLOITABILITY: self.exploitability(pi),
                metrics.KL_TO_REF: self.expectation(kl_to_ref),
                metrics.WIN_RATE_VS_REF: self.expectation(self.win_rate(pi, self.ref)),
                metrics.WIN_RATE_VS_NASH: self.expectation(self.win_rate(pi, self.nash(0.0)))}

    # ------------------------------------------------------------------ equilibria
    def exploitability(self, pi, beta: float = 0.0) -> float:
        """ρ-weighted exploitability of π in the (β-regularized) symmetric game, closed form.

        β = 0: E_x[max_y P(y ≻ π|x) − ½] (0 exactly at a Nash equilibrium; the duality gap is
        twice this). β > 0, for max_π min_π' P(π ≻ π') − βKL(π‖π_ref) + βKL(π'‖π_ref):
        E_x[β log Σ_y π_ref(y) exp(P(y ≻ π)/β) + β KL(π‖π_ref) − ½] (0 exactly at π*_β), with
        :func:`soft_best_response_value` and :func:`kl_divergence` (accurate for huge β too).
        Each context's gap is ≥ 0 mathematically, so rounding below 0 is returned as 0.

        Raises:
            ValueError: β NaN, infinite or negative; ``pi`` not a policy of this game.
        """
        beta = check_real("beta", beta, 0)
        pi = self.check_policy(pi)
        win = self.win_rates(pi)
        if beta == 0:
            gap = win.max(axis=1) - 0.5
        else:
            with np.errstate(divide="ignore"):
                kl = kl_divergence(np.log(pi), np.log(self.ref))
            gap = soft_best_response_value(win, self.ref, beta) + beta * kl - 0.5
        return self.expectation(np.maximum(gap, 0.0))

    def nash(self, beta: float = 0.0, start=None) -> np.ndarray:
        """Equilibrium policy [X, Y] (cached per β).

        β = 0: a von Neumann winner per context from the LP max v s.t. (P−½)ᵀp ≥ v, Σp = 1,
        p ≥ 0 (scipy HiGHS). The winner need not be unique: compare values, not vectors.
        β > 0: the unique regularized equilibrium π*_β ∝ π_ref·exp(P(y ≻ π*_β)/β), solved by
        damped Newton on the fixed-point equations to a residual below 1e-12 (1e-14/β for
        β < 0.01, the floating-point floor). Below β = 0.05 it continues from π*_2β: the ladder
        β, 2β, 4β, … is solved top-down (a loop, any depth). Above 1/ε_machine ≈ 4.5e15 it is
        π_ref itself (the β → ∞ limit, equal to π*_β to machine precision).

        ``start`` (β > 0, optional): a policy [X, Y] near π*_β, e.g. the equilibrium of a nearby
        game, to warm-start Newton from instead of π_ref (falling back to the cold start if Newton
        stalls from it). The equilibrium is unique, so the result is the same to the solver's
        tolerance, in fewer Newton steps when ``start`` is close (``newton_steps[beta]`` counts
        them). Ignored where π*_β is cached or needs no Newton (β = 0, β past 1/ε).

        Raises:
            ValueError: β NaN, infinite or negative; ``start`` not a policy of this game.
            RuntimeError: the continuation stalls (β too small for float64), naming this β.
        """
        beta = check_real("beta", beta, 0)
        if start is not None:
            start = self.check_policy(start, "start")
        if beta not in self._nash_cache:
            if beta == 0:
                self._nash_cache[beta] = self._solve_lp()
            elif beta >= _REF_LIMIT_BETA:
                self._nash_cache[beta] = self.ref.copy()
            else:
                self._solve_regularized(beta, start)
        return self._nash_cache[beta].copy()

    def _solve_lp(self) -> np.ndarray:
        n = self.n_actions
        c = np.zeros(n + 1)
        c[-1] = -1.0  # maximize v
        a_eq = np.append(np.ones(n), 0.0)[None]
        bounds = [(0, None)] * n + [(None, None)]
        out = np.empty((self.n_contexts, n))
        for x in range(self.n_contexts):
            a_ub = np.hstack([-self.A[x].T, np.ones((n, 1))])  # v - (Aᵀp)_j <= 0
            res = linprog(c, A_ub=a_ub, b_ub=np.zeros(n), A_eq=a_eq, b_eq=[1.0], bounds=bounds,
                          method="highs", options={"primal_feasibility_tolerance": 1e-10,
                                                   "dual_feasibility_tolerance": 1e-10})
            if res.status != 0:
                raise RuntimeError(f"LP for context {x} failed: {res.message}")
            p = np.clip(res.x[:n], 0.0, None)
            out[x] = p / p.sum()
        return out

    def _solve_regularized(self, beta: float, start: np.ndarray | None = None, tol: float = 1e-12,
                           max_iter: int = 100) -> None:
        """Cache π*_β, the fixed point π = softmax(log π_ref + P(·≻π)/β) (:func:`softmax_fixed_point`),
        and in ``newton_steps[beta]`` the Newton steps (batched [X, Y+1, Y+1] solves) it took.

        A warm ``start`` is tried first, at β itself, one fixed-point step off ``start``. Cold (or
        if Newton stalls from ``start``), with continuation for small β: Newton from π_ref stalls
        (β ≲ 2e-3 on cyclic games), so each rung of the ladder β·2^k < 0.05 starts one fixed-point
        step off the equilibrium of the rung above (cached); the top rung starts from π_ref or from
        a cached equilibrium.
        """
        if self.ref.min() <= 0:
            raise ValueError(f"beta={beta:g} > 0 needs a reference policy with full support (ref > 0)")
        self.newton_steps[beta] = 0
        if start is not None and self._solve_rung(beta, start, tol, max_iter):
            return
        ladder = [beta]
        while ladder[-1] < _CONTINUATION_BETA and 2 * ladder[-1] not in self._nash_cache:
            ladder.append(2 * ladder[-1])
        for rung in reversed(ladder):
            rung_start = self._nash_cache[2 * rung] if rung < _CONTINUATION_BETA else self.ref
            if not self._solve_rung(rung, rung_start, tol, max_iter, count_as=beta):
                where = "" if rung == beta else \
                    f" (the continuation from beta={_CONTINUATION_BETA} stalled at {rung:.3g})"
                raise RuntimeError(f"nash(beta={beta:g}): the regularized equilibrium did not converge{where}; "
                                   "beta this small is past float64 precision, use beta=0 for the unregularized "
                                   "equilibrium")

    def _solve_rung(self, beta: float, start: np.ndarray, tol: float, max_iter: int,
                    count_as: float | None = None) -> bool:
        """Newton for π*_β from one fixed-point step off ``start``; caches it and returns True, or
        False if Newton stalls. Its steps are added to ``newton_steps[count_as]`` (default β)."""
        log_ref = np.log(self.ref)
        steps = 0

        def jacobian(pi):  # called once per Newton step
            nonlocal steps
            steps += 1
            return self.P / beta

        u = softmax_fixed_point(lambda pi: log_ref + self.win_rates(pi) / beta, jacobian,
                                log_softmax(log_ref + self.win_rates(start) / beta, axis=1),
                                tol * max(1.0, 0.01 / beta), max_iter)  # P/β carries rounding of order 1e-16/β
        self.newton_steps[beta if count_as is None else count_as] += steps
        if u is not None:
            self._nash_cache[beta] = softmax(u, axis=1)
        return u is not None


def softmax_fixed_point(target_logits, target_jacobian, u: np.ndarray, tol: float = 1e-12,
                        max_iter: int = 100) -> np.ndarray | None:
    """Solve π = softmax(g(π)) per row by damped Newton, batched over rows; returns log π or None.

    Unknowns u = log π and λ (the log-partition): F(u, λ) = [u − g(e^u) + λ ; Σ e^u − 1] = 0, with
    Jacobian [[I − J(π)·diag(π), 1], [πᵀ, 0]] where J = ∂g/∂π (``target_jacobian(pi)``,
    [X, Y, Y]). Each row backtracks until its residual shrinks. ``u`` is the start (log-probs).
    """
    X, Y = u.shape

    def residual(u, lam):
        with np.errstate(all="ignore"):  # a trial step may overshoot
            pi = np.exp(u)
            return np.concatenate([u - target_logits(pi) + lam, pi.sum(axis=1, keepdims=True) - 1.0], axis=1)

    lam = logsumexp(target_logits(np.exp(u)), axis=1, keepdims=True)
    f = residual(u, lam)
    jac = np.zeros((X, Y + 1, Y + 1))
    jac[:, :Y, Y] = 1.0
    for _ in range(max_iter):
        err = np.abs(f).max(axis=1)
        if err.max() < tol:
            return u
        pi = np.exp(u)
        jac[:, :Y, :Y] = np.eye(Y) - target_jacobian(pi) * pi[:, None, :]
        jac[:, Y, :Y] = pi
        step = np.linalg.solve(jac, -f[..., None])[..., 0]
        t = np.ones((X, 1))
        for _ in range(40):
            new_u, new_lam = u + t * step[:, :Y], lam + t * step[:, Y:]
            new_f = residual(new_u, new_lam)
            ok = (np.abs(new_f).max(axis=1) < err) | (err < tol)
            if ok.all():
                break
            t = np.where(ok[:, None], t, t / 2)
        u, lam, f = new_u, new_lam, new_f
    return None


def bandit_game_bytes(n_contexts: int, n_actions: int, feature_dim: int) -> float:
    """Peak memory of :func:`make_game` in closed form: about :data:`_DENSE_COPIES` float64 arrays
    of shape [X, Y, Y] alive at once (P, the payoff A = P − ½ and construction temporaries), plus
    the features, rewards and π_ref."""
    X, Y = float(n_contexts), float(n_actions)
    return 8.0 * (_DENSE_COPIES * X * Y * Y + X * (feature_dim + 3 * Y))


def family_preference(family: str, features: np.ndarray, Y: int, rng: np.random.Generator, reward_scale: float,
                      cyclic_strength: float, n_annotators: int, reward_levels: int):
    """(P [X, Y, Y], hidden rewards [X, Y] or None) of :func:`make_game`'s ``family``, drawn from ``rng``."""
    X, d = features.shape

    def linear_reward():
        theta = rng.normal(size=(d, Y)) / np.sqrt(d)
        bias = 0.5 * rng.normal(size=Y)
        return reward_scale * (features @ theta + bias)

    def bt(r):
        return expit(r[:, :, None] - r[:, None, :])

    rewards = linear_reward()
    if family == "mixed":
        weights = rng.dirichlet(np.ones(n_annotators))
        P = sum(w * bt(linear_reward()) for w in weights)
        rewards = None
    elif family == "reward_order":
        lo, hi = rewards.min(1, keepdims=True), rewards.max(1, keepdims=True)
        rewards = np.floor((rewards - lo) / (hi - lo + 1e-12) * reward_levels).clip(0, reward_levels - 1)
        P = reward_order_preference(rewards)
    else:
        margin = rewards[:, :, None] - rewards[:, None, :]
        if cyclic_strength:
            pos = np.argsort(rng.random((X, Y)), axis=1)
            margin = margin + cyclic_strength * np.sin(2 * np.pi * (pos[:, :, None] - pos[:, None, :]) / Y)
        P = expit(margin)
    return 0.5 * (P + 1.0 - P.transpose(0, 2, 1)), rewards  # exact antisymmetry in floating point


def make_game(
    family: str = "bt",
    n_contexts: int = 8,
    n_actions: int = 6,
    feature_dim: int = 4,
    seed: int | None = 0,
    reward_scale: float | None = None,
    cyclic_strength: float | None = None,
    n_annotators: int = 3,
    reward_levels: int = 3,
    ref_scale: float = 1.0,
    uniform_rho: bool = False,
) -> PreferenceGame:
    """Build a seeded game of one family.

    Families: ``bt`` — Bradley–Terry P = σ(r(y) − r(y')); ``cyclic`` — σ(r(y) − r(y') + c·S)
    with an antisymmetric rock-paper-scissors skew S(y, y') = sin(2π(σ_x(y) − σ_x(y'))/Y)
    (σ_x a random permutation per context); ``mixed`` — a ρ-mixture of ``n_annotators`` BT
    annotators (Condorcet cycles from aggregation); ``reward_order`` — 1{r > r'} + ½·1{r = r'}
    with the reward quantized to ``reward_levels`` values (ties).

    Rewards are linear in the context features, r = scale·(φ(x)·θ_y + b_y), so a policy over
    features can generalize across contexts. π_ref = softmax(ref_scale·N(0, 1)); ρ is
    Dirichlet(10) (or uniform with ``uniform_rho``).

    Raises:
        ValueError: an unknown family, an out-of-range size or scale, or a game whose dense P
            would exceed :func:`~prefzoo.envs.checks.memory_limit` (checked before allocating,
            :func:`bandit_game_bytes`).
        TypeError: a size or scale of the wrong type.
    """
    check_choice("family", family, FAMILIES)
    n_contexts, n_actions = check_int("n_contexts", n_contexts, low=1), check_int("n_actions", n_actions, low=2)
    feature_dim = check_int("feature_dim", feature_dim, low=1)
    n_annotators = check_int("n_annotators", n_annotators, low=1)
    reward_levels = check_int("reward_levels", reward_levels, low=1)
    check_memory(f"a {family} game with n_contexts={n_contexts:,}, n_actions={n_actions:,}",
                 bandit_game_bytes(n_contexts, n_actions, feature_dim),
                 "the dense preference tensor P has n_contexts·n_actions² entries")
    defaults = FAMILY_DEFAULTS[family]
    reward_scale = check_real("reward_scale", defaults["reward_scale"] if reward_scale is None else reward_scale, 0)
    cyclic_strength = check_real("cyclic_strength",
                                 defaults["cyclic_strength"] if cyclic_strength is None else cyclic_strength, 0)
    ref_scale = check_real("ref_scale", ref_scale, 0)
    if seed is not None:
        seed = check_int("seed", seed, low=0)

    rng = np.random.default_rng(seed)
    X, Y = n_contexts, n_actions
    features = rng.normal(size=(X, feature_dim))
    P, rewards = family_preference(family, features, Y, rng, reward_scale, cyclic_strength, n_annotators,
                                   reward_levels)
    ref = softmax(ref_scale * rng.normal(size=(X, Y)), axis=1)
    rho = np.full(X, 1.0 / X) if uniform_rho else rng.dirichlet(np.full(X, 10.0))
    return PreferenceGame(P, ref, rho, features, rewards, family=family, seed=seed)


def import_game_class(path: str) -> type:
    """The class at ``"module:Class"`` (e.g. a game class named in a registration)."""
    module, _, name = path.partition(":")
    if not name:
        raise ValueError(f"a game class is named 'module:Class', got {path!r}")
    return getattr(importlib.import_module(module), name)


def env_game(factory, game: PreferenceOracle | str | None, *args: Any, max_queries: int | None = None,
             **kwargs: Any) -> PreferenceOracle:
    """The game an env constructor holds: ``game`` as given; a ``"module:Class"`` string built as
    ``Class(**kwargs)`` (a registered game class, :func:`~prefzoo.envs.register_game`; ``args``, the
    built-in family, is not its); else ``factory(*args, **kwargs)``. The run's budget
    ``max_queries`` is set on it (:meth:`~prefzoo.envs.oracle.PreferenceOracle.set_budget`).

    Gymnasium passes ``gym.make`` kwargs straight through, so an unknown keyword is a
    ``ValueError`` naming the valid ones, and a game object together with game keywords is an error.
    """
    if isinstance(game, str):
        factory, game, args = import_game_class(game), None, ()
    if game is not None:
        if kwargs:
            raise ValueError(f"pass either game= or game arguments, not both (got {sorted(kwargs)})")
    else:
        valid = [*list(inspect.signature(factory).parameters)[len(args):], "max_queries"]
        for name in kwargs:
            check_choice("game argument", name, valid)
        game = factory(*args, **kwargs)
    if max_queries is not None:
        game.set_budget(max_queries)
    return game
