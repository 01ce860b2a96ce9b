"""Classic dueling bandits, run independently per context: RUCB and Double Thompson Sampling.

They choose which pair to compare from the win counts alone (no policy is trained) and report
their recommended response as a point-mass policy. Helpers: the confidence bounds both use
(:func:`confidence_bounds`), a random-tie argmax (:func:`random_argmax`), one decision of each
rule (:func:`rucb_pairs`, :func:`double_ts_pairs`) and the recommendation
(:func:`recommended_responses`), followed by :class:`DuelingBandit` and its two named rules.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from prefzoo.envs import duel
from prefzoo.envs.checks import check_real
from prefzoo.envs.oracle import sample_categorical

from .base import Algorithm


def confidence_bounds(wins: np.ndarray, t: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(U, L) = W/N ± √(α·ln t / N) with N = W + Wᵀ, [m, Y, Y] (``wins`` W[y, y'] = wins of y over
    y'; ``t`` [m] the time step per context); U = 1 and L = 0 where N = 0; diagonal ½."""
    n = wins + wins.transpose(0, 2, 1)
    seen = n > 0
    safe = np.where(seen, n, 1.0)
    mean, width = wins / safe, np.sqrt(alpha * np.log(t)[:, None, None] / safe)
    upper, lower = np.where(seen, mean + width, 1.0), np.where(seen, mean - width, 0.0)
    diag = np.arange(wins.shape[1])
    upper[:, diag, diag] = lower[:, diag, diag] = 0.5
    return upper, lower


def random_argmax(scores: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row, an index drawn uniformly among the maximizers of ``scores`` over ``allowed`` [m, Y]."""
    masked = np.where(allowed, scores, -np.inf)
    ties = allowed & (masked == masked.max(axis=1, keepdims=True))
    return np.where(ties, rng.random(ties.shape), -1.0).argmax(axis=1)


def rucb_pairs(wins, t, alpha, best, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One RUCB decision per context (Zoghi et al. 2014, Algorithm 1); returns (c, d, new best set).

    C = {c : U(c, j) ≥ ½ ∀j} (all responses when empty); the hypothesized best set B ← B ∩ C, or
    B ← C when |C| = 1 (``best`` [m, Y] bool, |B| ≤ 1). c is drawn from C with probability ½ on
    B and the rest spread evenly over C \\ B (uniform over C when B is empty); the challenger d
    maximizes U(d, c), ties broken at random and excluding c when tied.
    """
    upper, _ = confidence_bounds(wins, t, alpha)
    cands = (upper >= 0.5).all(axis=2)
    n_cands = cands.sum(axis=1, keepdims=True)
    best = np.where(n_cands == 1, cands, best & cands)
    rest = cands & ~best
    spread = np.where(best.any(axis=1, keepdims=True), 0.5, 1.0) * rest / np.maximum(rest.sum(axis=1, keepdims=True), 1)
    weights = np.where(n_cands == 0, 1.0, np.where(rest.any(axis=1, keepdims=True), 0.5 * best + spread, best + cands))
    c = sample_categorical(weights / weights.sum(axis=1, keepdims=True), rng)
    column = upper[np.arange(len(c)), :, c]  # U(j, c)
    ties = column == column.max(axis=1, keepdims=True)
    allowed = np.ones_like(ties)
    allowed[np.arange(len(c)), c] = ties.sum(axis=1) == 1  # c only as the sole maximizer
    return c, random_argmax(column, allowed, rng), best


def double_ts_pairs(wins, t, alpha, rng) -> tuple[np.ndarray, np.ndarray]:
    """One Double Thompson Sampling decision per context (Wu & Liu 2016, Algorithm 1).

    First response: among the upper-Copeland leaders C = argmax_i #{j ≠ i : U(i, j) > ½}, the one
    beating the most others under θ⁽¹⁾(i, j) ~ Beta(W(i, j) + 1, W(j, i) + 1) (i < j,
    θ⁽¹⁾(j, i) = 1 − θ⁽¹⁾(i, j)). Second: the argmax over {i : L(i, a₁) ≤ ½} of a fresh
    θ⁽²⁾(i, a₁) ~ Beta(W(i, a₁) + 1, W(a₁, i) + 1), with θ⁽²⁾(a₁, a₁) = ½. Ties at random.
    """
    m, Y, _ = wins.shape
    upper, lower = confidence_bounds(wins, t, alpha)
    leaders = (upper > 0.5).sum(axis=2)
    leaders = leaders == leaders.max(axis=1, keepdims=True)
    i, j = np.triu_indices(Y, 1)
    theta = np.full((m, Y, Y), 0.5)
    theta[:, i, j] = rng.beta(wins[:, i, j] + 1, wins[:, j, i] + 1)
    theta[:, j, i] = 1 - theta[:, i, j]
    first = random_argmax((theta > 0.5).sum(axis=2), leaders, rng)
    rows = np.arange(m)
    theta2 = rng.beta(wins[rows, :, first] + 1, wins[rows, first, :] + 1)
    theta2[rows, first] = 0.5
    second = random_argmax(theta2, lower[rows, :, first] <= 0.5, rng)
    return first, second


def recommended_responses(wins: np.ndarray) -> np.ndarray:
    """The empirical Copeland winner per context, [X]: the Copeland score of P̂ = (W + ½)/(N + 1)
    (½ for unseen pairs), ties broken by the Borda score (< 1, so it never overturns a Copeland
    step), then by the lowest index — RUCB's returned arm."""
    P_hat = (wins + 0.5) / (wins + wins.transpose(0, 2, 1) + 1)
    return (duel.copeland_scores(P_hat) + duel.borda_scores(P_hat)).argmax(axis=1)


class DuelingBandit(Algorithm):
    """A K-armed dueling bandit per context; the rule is fixed by :class:`RUCB` / :class:`DoubleTS`.

    Each iteration draws ``batch_size`` contexts from ρ and makes one comparison for each, in
    order: a context drawn k times in the batch takes k sequential decisions, each seeing the
    previous results (the per-context time t counts that context's comparisons, from 1). Comparing
    a response with itself (when the rule is sure of its winner) is a counted query that teaches
    nothing. ``policy_probs()`` is a point mass on the recommended response
    (:func:`recommended_responses`, the empirical Copeland winner); the algorithm is judged by
    exploitability and by the ``duel/`` regret of the pairs it compared.

    Args:
        alpha: α > ½, the confidence-bound exploration constant (both papers use 0.51).
        batch_size: comparisons per iteration.
        mode: ``"sample"`` only.

    Raises:
        ValueError: alpha ≤ ½.
    """

    supported_modes = ("sample",)
    reads_every_response = True  # the win tables are dense [X, Y, Y]
    trains_policy = False  # the policy is the recommendation (self.pi)
    rule: ClassVar[str] = "rucb"
    _extra_state = ("wins", "steps", "best")

    def __init__(self, env, seed: int = 0, mode: str = "sample", alpha: float = 0.51, batch_size: int = 256):
        alpha = check_real("alpha", alpha, 0.5, low_open=True)  # the regret bounds of RUCB and Double TS need it
        super().__init__(env, seed, mode, batch_size=batch_size)
        self.alpha = float(alpha)
        X, Y = self.game.n_contexts, self.game.n_actions
        self.wins = np.zeros((X, Y, Y))  # wins[x, y, y'] = comparisons of y against y' that y won
        self.steps = np.zeros(X, dtype=np.int64)  # comparisons made per context
        self.best = np.zeros((X, Y), dtype=bool)  # RUCB's hypothesized best set B (|B| <= 1)

    def policy_probs(self) -> np.ndarray:
        return np.eye(self.game.n_actions)[recommended_responses(self.wins)]

    def step(self):
        x = np.sort(self.game.sample_contexts(self.batch_size, self.rng))
        occurrence = np.arange(len(x)) - np.searchsorted(x, x)  # k-th draw of its context
        for wave in range(occurrence.max() + 1):
            ctx = x[occurrence == wave]  # distinct contexts
            t = self.steps[ctx] + 1
            if self.rule == "rucb":
                y, y2, self.best[ctx] = rucb_pairs(self.wins[ctx], t, self.alpha, self.best[ctx], self.rng)
            else:
                y, y2 = double_ts_pairs(self.wins[ctx], t, self.alpha, self.rng)
            b = self.compare(ctx, y, y2)
            other = y != y2  # a self-comparison carries no information
            self.wins[ctx[other], y[other], y2[other]] += b[other]
            self.wins[ctx[other], y2[other], y[other]] += 1 - b[other]
            self.steps[ctx] += 1
        return {}


class RUCB(DuelingBandit):
    """Relative Upper Confidence Bound (:func:`rucb_pairs`) per context.

    Paper: Zoghi, Whiteson, Munos, de Rijke (2014), "Relative Upper Confidence Bound for the
    K-Armed Dueling Bandit Problem", ICML, arXiv:1312.3393.
    """

    rule = "rucb"


class DoubleTS(DuelingBandit):
    """Double Thompson Sampling (:func:`double_ts_pairs`) per context.

    Paper: Wu & Liu (2016), "Double Thompson Sampling for Dueling Bandits", NeurIPS, arXiv:1604.07101.
    """

    rule = "double_ts"
