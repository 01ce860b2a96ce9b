"""Iterative Best-of-N with reference mixing: π_{t+1} ∝ μ^α · BoN_N(π_t)^{1−α}, the dynamics the
WIND paper shows to solve the (regularized) log-win-rate game. This module holds the Best-of-N
distribution in closed form over a tied reward order (:func:`best_of_n`), its generalization to
any preference matrix as the exact law of a comparison tournament (:func:`bon_ratio`), the exact
step and its fixed point (:func:`bon_fixed_point`), and the sample-mode distillation loss
(:func:`bond_loss`), followed by the algorithm class :class:`IterativeBoN`.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_choice, check_int, check_probability
from prefzoo.envs.game import reward_order_preference, softmax_fixed_point
from prefzoo.envs.log_win_rate import bon_beta

from .base import Algorithm
from .wind import context_offset

SELECTIONS = ("comparisons", "reward")
NORMALIZERS = ("exact", "sampled")


def best_of_n(pi: np.ndarray, reward: np.ndarray, n: int) -> np.ndarray:
    """Best-of-``n`` distribution of π over a finite reward order with ties, [..., Y].

    With F(y) = P_{y'∼π}(r(y') ≤ r(y)) and F(y⁻) = P_{y'∼π}(r(y') < r(y)),
    π_BoN(y) = π(y)·[F(y)^n − F(y⁻)^n]/[F(y) − F(y⁻)]: the top draw falls in y's tie class with
    probability F^n − F⁻^n and ties are split in proportion to π. The ratio is evaluated as
    Σ_{k<n} F^k·F⁻^{n−1−k}, so responses with π(y) = 0 (and empty tie classes, F = F⁻) give 0
    without a division. Leading axes of ``pi`` and ``reward`` broadcast.
    """
    n = check_int("n", n, low=1)
    pi, reward = np.broadcast_arrays(np.asarray(pi, dtype=np.float64),
                                     np.asarray(reward, dtype=np.float64))
    below_eq = reward[..., None, :] <= reward[..., :, None]  # [..., y, y'] = 1{r(y') <= r(y)}
    below = reward[..., None, :] < reward[..., :, None]
    f = np.einsum("...ij,...j->...i", below_eq.astype(np.float64), pi)
    f_minus = np.einsum("...ij,...j->...i", below.astype(np.float64), pi)
    ratio = sum(f**k * f_minus ** (n - 1 - k) for k in range(int(n)))
    return pi * ratio


def bon_ratio(P: np.ndarray, pi: np.ndarray, n: int, jacobian: bool = False):
    """R = BoN_n(π)/π for a general preference matrix, [..., Y] (and dR/dπ, [..., Y, Y]).

    BoN_n(π) is the exact law of the winner of a sequential (king-of-the-hill) tournament: draw
    y_1..y_n ∼ π, the champion starts as y_1 and meets y_2, …, y_n in turn, one comparison each,
    the winner staying champion. Its law W_k = π·R_k obeys W_{k+1} = W_k⊙P(·≻π) + π⊙P(·≻W_k),
    i.e. R_1 = 1, R_{k+1} = R_k⊙(Pπ) + P(π⊙R_k). For n = 2, R = 2P(y≻π) exactly; when P is a
    reward order (1{r>r'} + ½·1{r=r'}) the law equals :func:`best_of_n` for every n; for a
    non-transitive P it is the sampling definition with this tournament (n − 1 comparisons).
    """
    win = np.einsum("...ij,...j->...i", P, pi)
    ratio = np.ones_like(pi)
    grad = np.zeros(pi.shape + pi.shape[-1:])
    for _ in range(int(n) - 1):
        if jacobian:
            grad = (win[..., :, None] * grad + ratio[..., :, None] * P + P * ratio[..., None, :]
                    + np.einsum("...ij,...j,...jk->...ik", P, pi, grad))
        ratio = ratio * win + np.einsum("...ij,...j->...i", P, pi * ratio)
    return (ratio, grad) if jacobian else ratio


def log_bon_step(log_pi: np.ndarray, log_ref: np.ndarray, P: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """Exact step log π_{t+1} = log_softmax(α log μ + (1−α)(log π_t + log R(π_t))), in log space
    throughout: a dominated response's log-probability keeps decreasing instead of underflowing
    to 0 (−inf stays −inf)."""
    with np.errstate(divide="ignore"):
        log_bon = log_pi + np.log(bon_ratio(P, np.exp(log_pi), n))
    return log_softmax(alpha * log_ref + (1 - alpha) * log_bon, axis=-1)


def bon_step(pi: np.ndarray, log_ref: np.ndarray, P: np.ndarray, n: int,
             alpha: float) -> np.ndarray:
    """Exact step π_{t+1} ∝ μ^α·BoN_n(π_t)^{1−α} (:func:`log_bon_step`; zeros stay zeros)."""
    with np.errstate(divide="ignore"):
        return np.exp(log_bon_step(np.log(pi), log_ref, P, n, alpha))


def _newton_fixed_point(P, log_ref, kappa, n, u, tol):
    """Newton on π = softmax(log μ + κ·log R(π)) (batched) from ``u``; log π or None if stuck."""
    def jacobian(pi):
        ratio, grad = bon_ratio(P, pi, n, jacobian=True)
        return kappa * grad / ratio[:, :, None]

    return softmax_fixed_point(lambda pi: log_ref + kappa * np.log(bon_ratio(P, pi, n)), jacobian, u, tol,
                               max_iter=60)


def bon_fixed_point(P: np.ndarray, ref: np.ndarray, alpha: float, n: int, tol: float = 1e-12,
                    max_iter: int = 5000) -> np.ndarray | None:
    """Fixed point of π ∝ μ^α·BoN_n(π)^{1−α}, i.e. π ∝ μ·R(π)^{(1−α)/α}, [X, Y].

    First the exact iteration itself is run from π_ref until max|π_{t+1} − π_t| < ``tol``: its
    limit is the target (it may lie on the boundary, e.g. on reward-order games dominated
    responses go to 0): entries below ``tol`` at convergence are that limit's zeros to the
    iteration's accuracy and are set to 0 (a 3e-26 left on a response still shrinking towards 0
    would make KL(target‖π) infinite once π underflows there). Contexts where the iteration
    cycles (non-transitive P with small α) get
    the interior fixed point by Newton continuation in α (from α = ½ down to ``alpha``). Returns
    None (with a warning) when neither converges.
    """
    log_ref = np.log(ref)
    pi = ref.copy()
    for _ in range(max_iter):
        new = bon_step(pi, log_ref, P, n, alpha)
        gap = np.abs(new - pi).max(axis=1)
        pi = new
        if gap.max() < tol:
            pi = np.where(pi < tol, 0.0, pi)
            return pi / pi.sum(axis=1, keepdims=True)
    stuck = gap >= tol
    u, a = log_ref[stuck].copy(), 0.5
    while u is not None:
        a = max(a, alpha)
        u = _newton_fixed_point(P[stuck], log_ref[stuck], (1 - a) / a, n, u, tol)
        if u is not None and a == alpha:
            pi[stuck] = np.exp(u - logsumexp(u, axis=1, keepdims=True))
            return pi
        a /= 2
    warnings.warn(f"iterative BoN (alpha={alpha}, n={n}): no fixed point found; no kl_to_target",
                  RuntimeWarning, stacklevel=2)
    return None


def demixed_logits(log_probs: torch.Tensor, log_ref: torch.Tensor, alpha: float) -> torch.Tensor:
    """g_θ = (log π_θ − α log μ)/(1−α), the log of the "de-mixed" policy q_θ ∝ e^g, for which
    π_θ ∝ μ^α·q_θ^{1−α}: fitting q_θ to BoN_N(π_t) makes π_θ the geometric-mixture step."""
    return (log_probs - alpha * log_ref) / (1 - alpha)


def bond_loss(log_probs: torch.Tensor, log_ref: torch.Tensor, winners: torch.Tensor, alpha: float,
              weight: torch.Tensor | None = None) -> torch.Tensor:
    """Forward-KL distillation of BoN winners into q_θ ∝ e^g (:func:`demixed_logits`), normalized
    over every response.

    ``log_probs`` = log π_θ(·|x) [n, Y], ``log_ref`` = log μ(·|x) [n, Y], ``winners`` [n].
    Loss −mean log q_θ(y_win) (or Σ weight·(−log q_θ) with per-row ``weight``). Its population
    minimizer is q_θ = BoN_n(π_t), i.e. π_θ ∝ μ^α·q_θ^{1−α} = μ^α·BoN_n(π_t)^{1−α}: exactly the
    geometric-mixture step.
    """
    log_q = torch.log_softmax(demixed_logits(log_probs, log_ref, alpha), dim=-1)
    per = -log_q.gather(-1, winners[:, None])[:, 0]
    return per.mean() if weight is None else (weight * per).sum()


def sampled_bond_loss(g_winner: torch.Tensor, g_candidates: torch.Tensor, log_old_candidates: torch.Tensor,
                      offset: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The same distillation without a sum over responses: the generalized forward KL of the
    unnormalized measure e^{g−c} to BoN_N(π_t), KL(p ‖ q̃) = E_p[log p − log q̃] − 1 + Σ_y q̃(y),
    whose Σ_y q̃(y) = E_{y∼π_t}[e^{g(y)−c−log π_t(y)}] is estimated without bias from the N
    candidates y_j ∼ π_t already drawn for the tournament. Per prompt x:
    ℓ = −(g(y_win) − c(x)) + (1/N)·Σ_j e^{g(y_j) − c(x) − log π_t(y_j)}.

    ``g_winner`` [n], ``g_candidates`` [n, N] (:func:`demixed_logits`), ``log_old_candidates``
    = log π_t(y_j) [n, N], ``offset`` = c(x) [n] (learned; it plays log Z), ``weight`` [n]
    optional per-prompt weights (Σ weight·ℓ). Minimizing over q̃ gives q̃ = BoN_N(π_t) pointwise,
    so with a free c the population minimizer is again the exact geometric step; the estimate and
    its gradient are unbiased (a log of a sampled normalizer would not be).
    """
    mass = torch.exp(g_candidates - offset[:, None] - log_old_candidates).mean(-1)
    per = -(g_winner - offset) + mass
    return per.mean() if weight is None else (weight * per).sum()


class IterativeBoN(Algorithm):
    """Iterative Best-of-N with reference mixing (the log-win-rate game), μ = π_ref.

    Paper: Yang et al. (2025), Faster WIND, arXiv:2410.20727 (iterative BoN, Algorithm 1 and
    Theorem 1); distillation as in BOND, Sessa et al. (2024), arXiv:2407.14622.

    Exact mode: π_{t+1} ∝ μ^α · BoN_N(π_t)^{1−α}, BoN_N from :func:`bon_ratio` (the law of the
    tournament winner; = 2π·P(y≻π) for N = 2, = :func:`best_of_n` on reward-order games). The
    fixed point solves π ∝ μ·R(π)^{(1−α)/α}; for N = 2 that is π ∝ μ·exp(log P(y≻π)/β) with
    β = α/(1−α). ``self.beta`` = α/((1−α)(N−1)) (:func:`~prefzoo.envs.log_win_rate.bon_beta`) (log BoN_N/π ≈ (N−1)·log-quantile), so the
    β-regularized exploitability is logged. ``target_policy()`` = :func:`bon_fixed_point`.

    Sample mode (BOND-style distillation): per prompt draw N responses from π_t (N counted
    samples), pick the winner by the tournament (N − 1 counted comparisons) and fit the
    "de-mixed" policy q_θ ∝ exp((log π_θ − α log μ)/(1−α)) to it by the forward KL
    KL(BoN_N(π_t) ‖ q_θ); since π_θ ∝ μ^α q_θ^{1−α}, its population minimizer (tabular policy) is
    the exact geometric step — unlike −(1−α)·log π_θ(y_win) − α·log π_θ(y_ref), whose minimizer
    is the arithmetic mixture (1−α)BoN + αμ. q_θ's normalizer is a sum over every response:
    ``normalizer="exact"`` computes it (:func:`bond_loss`; games whose responses can be listed),
    ``"sampled"`` replaces it by a learned per-prompt offset c(x) and an unbiased estimate from
    the N candidates (:func:`sampled_bond_loss`; language models, where BOND distills with
    samples only). *(reconstruction: BOND's iterative distillation has no reference mixing; this
    is the WIND paper's mixed step written as a sampled loss.)*

    Args:
        n: N ≥ 2 responses per Best-of-N draw.
        mixing: α ∈ (0, 1), weight of μ in the geometric mixture. α = 0 has no regularized
            fixed point (Theorem 1: sublinear convergence to a log-win-rate NE); α → 1 is π_ref.
            On 8×6 cyclic games with N = 2 the exact iteration converges for α ≥ 0.2 and can
            cycle for α ≤ 0.1 (then the fixed point comes from Newton continuation).
        normalizer: q_θ's normalizer in sample mode, ``"exact"`` (a sum over every response) or
            ``"sampled"`` (learned offset, no enumeration); None: ``"exact"`` where the game's
            response table may be read each iteration (``game.table_readable``), else ``"sampled"``.
        selection: ``"comparisons"`` (tournament by oracle comparisons; both modes) or
            ``"reward"`` (exact mode only: BoN by the hidden reward, :func:`best_of_n`; e.g. true
            Best-of-N on ``bt`` games, where noisy comparisons select differently for N > 2).
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`. Defaults lr 0.005, batch 256,
            5 grad steps (``zoo_configs/iterative_bon.yml``): a larger lr or more steps per batch
            over-fit each batch's winners (the batch MLE sends unseen responses to 0) and the KL
            to the target grows instead of shrinking.

    Raises:
        ValueError: n < 2, mixing outside (0, 1), an unknown selection or normalizer, ``"reward"``
            in sample mode or on a game without a hidden reward.
    """

    # exact mode iterates log π (no underflow in kl_to_target); the sampled normalizer learns an offset
    _extra_state = ("log_pi", "offset")

    def __init__(self, env, seed: int = 0, mode: str = "exact", n: int = 2, mixing: float = 0.2,
                 normalizer: str | None = None, selection: str = "comparisons", policy: str = "tabular",
                 lr: float = 0.005, batch_size: int = 256, grad_steps: int = 5, device: str = "cpu"):
        n = check_int("n", n, low=2)
        mixing = check_probability("mixing", mixing, low_open=True, high_open=True)  # 0 has no fixed point
        check_choice("selection", selection, SELECTIONS)
        if normalizer is not None:
            check_choice("normalizer", normalizer, NORMALIZERS)
        if selection == "reward" and mode == "sample":
            raise ValueError("selection='reward' reads the hidden reward, which sample mode "
                             "(counted comparisons only) cannot; use selection='comparisons'")
        self.reads_every_response = normalizer == "exact"
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        if selection == "reward" and self.game.rewards is None:
            raise ValueError(f"selection='reward' needs a game with a hidden reward; family "
                             f"{self.game.family!r} has none")
        self.n, self.mixing = int(n), float(mixing)
        self.normalizer = normalizer or ("exact" if self.game.table_readable else "sampled")
        self.beta = bon_beta(self.mixing, self.n)
        self.offset = context_offset(self) if mode == "sample" and self.normalizer == "sampled" else None
        self.log_pi = None if self.log_ref is None else self.log_ref.copy()
        self.order = None  # the preference the exact step and the target read (exact games only)
        if self.exact_preference:
            self.order = self.game.P if selection == "comparisons" else reward_order_preference(self.game.rewards)
        self._target: np.ndarray | None = None
        self._target_done = False

    def regularization(self) -> float:
        return self.beta

    def policy_log_probs(self):
        return self.log_pi.copy() if self.mode == "exact" else super().policy_log_probs()

    def target_policy(self):
        if self.order is None:  # no exact preference table: no exact fixed point (a game exact at any size)
            return None
        if not self._target_done:
            self._target = bon_fixed_point(self.order, self.game.ref, self.mixing, self.n)
            self._target_done = True
        return None if self._target is None else self._target.copy()

    def step(self):
        if self.mode == "exact":
            self.log_pi = log_bon_step(self.log_pi, self.log_ref, self.order, self.n, self.mixing)
            self.pi = np.exp(self.log_pi)
            return {}
        x = self.game.sample_contexts(self.batch_size, self.rng)
        # the N candidates of every prompt in one batched draw (one generate call on an LM): flat
        # candidate-major ys (x tiled N times), [n, N] per prompt
        tiled = np.tile(x, self.n)
        flat = self.sample_responses(tiled)
        candidates = flat.reshape(self.n, -1).T
        rows, champion = np.arange(len(x)), np.zeros(len(x), dtype=np.int64)
        for k in range(1, self.n):  # king-of-the-hill: one comparison per challenger
            beaten = self.compare(x, candidates[rows, champion], candidates[:, k]) <= 0.5
            champion = np.where(beaten, k, champion)
        xs, winner = self.tensor(x, torch.long), self.tensor(candidates[rows, champion], torch.long)
        if self.normalizer == "exact":
            log_ref = self.policy.log_ref[xs]
            loss = self.fit(lambda: bond_loss(self.policy.log_probs(xs), log_ref, winner, self.mixing))
            return {metrics.LOSS: loss}
        xs_all, ys_all = self.tensor(tiled, torch.long), self.tensor(flat, torch.long)

        def per_prompt(flat_values: torch.Tensor) -> torch.Tensor:  # [n·N] candidate-major → [n, N]
            return flat_values.reshape(self.n, -1).T

        log_old, log_ref = map(per_prompt, self.frozen_log_probs(xs_all, ys_all))
        picked = self.tensor(champion, torch.long)[:, None]

        def loss_fn():
            g = demixed_logits(per_prompt(self.policy.log_prob(xs_all, ys_all)), log_ref, self.mixing)
            return sampled_bond_loss(g.gather(1, picked)[:, 0], g, log_old, self.offset(xs)[:, 0])

        return {metrics.LOSS: self.fit(loss_fn)}
