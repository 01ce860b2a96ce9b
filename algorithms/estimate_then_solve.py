"""Estimate-then-solve: the statistical floor of query efficiency. Compare response pairs, estimate
the preference tensor P̂, and report the exact equilibrium of the estimated game: over a game's
listed responses, or, where they cannot be listed, over M candidates per prompt drawn from π_ref.
Helpers: the posterior-mean estimate (:func:`estimated_preferences`), the sensitivity weight of a
pair (:func:`pair_costs`) and the batch split toward the Neyman allocation
(:func:`neyman_allocation`), followed by the algorithm class :class:`EstimateThenSolve`.
"""

from __future__ import annotations

import numpy as np

from prefzoo.envs.answer_token import AnswerTokenGame, CandidatePolicy
from prefzoo.envs.checks import check_choice, check_int, check_real
from prefzoo.envs.game import PreferenceGame

from .base import Algorithm

ALLOCATIONS = ("uniform", "adaptive")


def estimated_preferences(wins: np.ndarray, counts: np.ndarray, prior_count: float, Y: int) -> np.ndarray:
    """P̂ [X, Y, Y] from ``wins``/``counts`` [X, Y(Y−1)/2] of the pairs y < y' (``np.triu_indices``
    order): P̂(y ≻ y') = (wins + a/2)/(n + a), the posterior mean under a Beta(a/2, a/2) prior with
    a = ``prior_count`` (½ for a pair never compared), P̂(y' ≻ y) = 1 − P̂(y ≻ y'), diagonal ½."""
    i, j = np.triu_indices(Y, 1)
    upper = (wins + prior_count / 2) / (counts + prior_count)
    P = np.full((wins.shape[0], Y, Y), 0.5)
    P[:, i, j] = upper
    P[:, j, i] = 1.0 - upper
    return P


def pair_costs(P_hat: np.ndarray, pi: np.ndarray, rho: np.ndarray, explore: float) -> np.ndarray:
    """c(x, y, y') = ρ(x)·π̃(y)π̃(y')(π̃(y) + π̃(y'))·P̂(1 − P̂) for the pairs y < y', [X, Y(Y−1)/2].

    π̃ = (1 − ``explore``)·π + ``explore``/Y. At first order the equilibrium π*_β ∝ π_ref·exp(P(·≻π)/β)
    moves by δ log π(y) ≈ (1/β)·Σ_y' π(y')·δP(y, y'), and KL(π*‖π̂) ≈ ½·Var_π(δ log π) is bounded
    by (1/2β²)·Σ_x ρ(x)·Σ_{y<y'} π(y)π(y')(π(y) + π(y'))·Var(P̂(y ≻ y')); with Var(P̂) = P(1 − P)/n
    that is Σ c/n. The ``explore`` mixture keeps every pair's weight positive, so a response that
    the current estimate undervalues is still compared.
    """
    Y = pi.shape[1]
    i, j = np.triu_indices(Y, 1)
    mixed = (1 - explore) * pi + explore / Y
    weight = mixed[:, i] * mixed[:, j] * (mixed[:, i] + mixed[:, j])
    upper = P_hat[:, i, j]
    return rho[:, None] * weight * upper * (1 - upper)


def neyman_allocation(costs: np.ndarray, counts: np.ndarray, budget: int) -> np.ndarray:
    """Integer counts of new queries per pair (same shape as ``costs``, summing to ``budget``).

    For a fixed total N the error Σ c_k/n_k is smallest at n_k ∝ √c_k (Neyman allocation). The
    target for the totals after this batch is n*_k = (Σn + budget)·√c_k/Σ√c; the budget is split
    in proportion to the deficits max(n*_k − n_k, 0), rounded by largest remainders.
    """
    root = np.sqrt(costs.ravel())
    target = (counts.sum() + budget) * root / root.sum()
    deficit = np.clip(target - counts.ravel(), 0.0, None)
    share = budget * deficit / deficit.sum()
    alloc = np.floor(share).astype(np.int64)
    rest = budget - int(alloc.sum())
    if rest:
        alloc[np.argsort(alloc - share, kind="stable")[:rest]] += 1  # largest fractional parts
    return alloc.reshape(costs.shape)


class EstimateThenSolve(Algorithm):
    """Estimate-then-solve: compare pairs, estimate P̂, return the exact equilibrium of P̂.

    The plain statistical baseline (the "query floor") against which the online alignment
    algorithms' query counts are read: no policy is trained, no response is sampled.

    Each iteration spends ``batch_size`` counted comparisons on pairs (x, y, y') with y < y'
    (one query each), updates the win counts, and re-solves: P̂ = :func:`estimated_preferences`
    (posterior mean, a valid preference tensor P̂ + P̂ᵀ = 1), and the reported policy is
    π*_β(P̂) = ``PreferenceGame(P̂, π_ref, ρ).nash(beta)``, the same solvers the games use (damped
    Newton for β > 0, the HiGHS LP von Neumann winner for β = 0). With every pair compared n
    times, E‖P̂ − P‖² = Σ P(1 − P)/n up to the prior's O(1/n²) bias, so KL(π*_β‖π̂) falls as 1/n.

    Candidates (``candidates=M``, games whose responses are not listed, e.g. 10^19 token rows per
    prompt): M responses per prompt are drawn from π_ref once, at construction (counted as samples),
    and the game is restricted to them with the reference uniform over the draws — the
    self-normalized importance-sampling form of π_ref, so the restricted π*_β(P̂) ∝ exp(P̂(y ≻ π)/β)
    over the draws tends to π*_β's answer-level law as M grows. The policy is a
    :class:`~prefzoo.envs.answer_token.CandidatePolicy`: its answer marginal, KL to π_ref and
    exploitability are exact; its support is the M draws.

    Allocations:
        ``uniform``: round-robin over all X·Y(Y−1)/2 pairs in one seeded random order, so after
            any number of queries the pair counts differ by at most one.
        ``adaptive``: each batch moves the counts toward the Neyman allocation n ∝ √c
            (:func:`neyman_allocation`) of the first-order KL bound Σ c/n, with the costs c of
            :func:`pair_costs` read at the current estimate: ρ(x) times the estimate's weight on
            the pair π̃(y)π̃(y')(π̃(y) + π̃(y')) times the variance P̂(1 − P̂) of one comparison.

    Args:
        beta: regularization β ≥ 0 of the target; β > 0: π*_β (``target_policy()`` = the game's
            own ``nash(beta)``, so ``game/kl_to_target`` is logged); β = 0: LP Nash equilibrium,
            judged by exploitability.
        allocation: ``"uniform"`` or ``"adaptive"``.
        batch_size: comparisons per iteration (the same queries-per-iteration unit as the other
            algorithms' budgets). The estimate is re-solved once per iteration.
        prior_count: a > 0 pseudo-comparisons per pair, half won, half lost (a Beta(a/2, a/2)
            prior): P̂ = ½ for a pair never compared, and the adaptive rule's variance is never 0.
        explore: ε ∈ (0, 1], the uniform share mixed into the estimate's weights by the adaptive
            rule (ignored by ``uniform``).
        candidates: M ≥ 2 responses per prompt drawn from π_ref to restrict the game to (above), or
            None (default): every listed response.
        mode: ``"sample"`` only (the estimate uses counted comparisons).

    Raises:
        ValueError: with ``candidates=None``, a game whose responses are not listed (or too many to
            read); with ``candidates=M``, a game whose exact answer-level services do not take a
            :class:`~prefzoo.envs.answer_token.CandidatePolicy`; beta < 0, an unknown allocation,
            prior_count ≤ 0, explore outside (0, 1] or M < 2.
    """

    supported_modes = ("sample",)
    reads_every_response = True  # P̂ is dense [X, Y, Y] and solved exactly
    trains_policy = False  # the policy is the solution of P̂ (self.pi)
    _extra_state = ("wins", "counts", "cursor")

    def __init__(self, env, seed: int = 0, mode: str = "sample", beta: float = 0.1, allocation: str = "uniform",
                 batch_size: int = 256, prior_count: float = 1.0, explore: float = 0.1, candidates: int | None = None):
        beta = check_real("beta", beta, 0)  # 0: the LP Nash equilibrium
        check_choice("allocation", allocation, ALLOCATIONS)
        prior_count = check_real("prior_count", prior_count, 0, low_open=True)  # pseudo-comparisons per pair
        explore = check_real("explore", explore, 0, 1, low_open=True)
        self.candidates = None if candidates is None else check_int("candidates", candidates, low=2)
        self.reads_every_response = candidates is None  # M candidates: P̂ is [X, M, M], whatever |Y|
        super().__init__(env, seed, mode, batch_size=batch_size)
        self.beta, self.allocation = float(beta), allocation
        self.prior_count, self.explore = float(prior_count), float(explore)
        X = self.game.n_contexts
        if candidates is None:
            Y = self.game.n_actions
            self.responses, self.ref = np.broadcast_to(np.arange(Y), (X, Y)), self.game.ref
        else:
            Y = self.candidates
            if not isinstance(self.game, AnswerTokenGame):
                raise ValueError(f"candidates=M needs a game whose policies over drawn responses are evaluated "
                                 f"exactly (prefzoo/AnswerTokenGame-v0), got {type(self.game).__name__}; on games "
                                 "of listed responses leave candidates=None")
            self.responses = self.game.sample_ref(np.repeat(np.arange(X), Y), self.rng).reshape(X, Y)
            self.samples += self.responses.size
            self.ref = np.full((X, Y), 1.0 / Y)
            self.pi = self.ref.copy()
        self.pairs_i, self.pairs_j = np.triu_indices(Y, 1)
        self.wins = np.zeros((X, len(self.pairs_i)))  # wins of pairs_i over pairs_j per context
        self.counts = np.zeros((X, len(self.pairs_i)))
        self.order = self.rng.permutation(self.wins.size)  # the uniform round-robin order
        self.cursor = 0  # queries made in that order so far
        # self.pi starts at π_ref, the solution of the all-½ prior estimate for every β > 0

    def target_policy(self):
        return self.game.nash(self.beta) if self.beta > 0 and self.game.exact else None

    def regularization(self) -> float:
        return self.beta

    def policy_probs(self) -> np.ndarray:
        return self.pi.copy()

    def evaluation_policy(self):
        if self.candidates is None:
            return super().evaluation_policy()
        return CandidatePolicy(self.game, self.game.rows(self.responses.ravel()).reshape(*self.responses.shape, -1),
                               self.pi)

    def export(self, run_dir):
        return super().export(run_dir) if self.candidates is None else self.evaluation_policy().export(run_dir)

    def estimate(self) -> np.ndarray:
        """The current estimate P̂ [X, Y, Y] (:func:`estimated_preferences`)."""
        return estimated_preferences(self.wins, self.counts, self.prior_count, self.responses.shape[1])

    def _solve(self) -> np.ndarray:
        """π*_β(P̂), warm-started from the previous solution ``self.pi`` (the equilibrium of the last
        estimate, which one batch moves little): the same unique fixed point to Newton's tolerance,
        in fewer Newton steps than from π_ref (``PreferenceGame.nash``'s ``start``)."""
        return PreferenceGame(self.estimate(), self.ref, self.game.rho).nash(self.beta, start=self.pi)

    def _next_pairs(self) -> np.ndarray:
        """Flat indices (context·n_pairs + pair) of this iteration's ``batch_size`` queries."""
        if self.allocation == "uniform":
            flat = self.order[(self.cursor + np.arange(self.batch_size)) % self.order.size]
            self.cursor += self.batch_size
            return flat
        costs = pair_costs(self.estimate(), self.pi, self.game.rho, self.explore)
        return np.repeat(np.arange(costs.size), neyman_allocation(costs, self.counts, self.batch_size).ravel())

    def step(self):
        flat = self._next_pairs()
        x, pair = np.divmod(flat, self.wins.shape[1])
        b = self.compare(x, self.responses[x, self.pairs_i[pair]], self.responses[x, self.pairs_j[pair]])
        self.wins += np.bincount(flat, weights=b, minlength=self.wins.size).reshape(self.wins.shape)
        self.counts += np.bincount(flat, minlength=self.counts.size).reshape(self.counts.shape)
        self.pi = self._solve()
        return {}
