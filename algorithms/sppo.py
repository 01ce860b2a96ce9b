"""SPPO: self-play preference optimization, i.e. multiplicative weights on the win rate against the
current policy. The unregularized preference game is solved by the average iterate (the last
iterate may cycle on intransitive games), so this module tracks both. Helpers: the exact MWU
step (:func:`sppo_step`), the K×K win-rate estimate (:func:`row_mean_win_rates`) and the
square loss (:func:`sppo_loss`), followed by the algorithm class :class:`SPPO`.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_softmax

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_choice, check_int, check_real

from .base import Algorithm

LABELS = ("comparison", "prob")


def sppo_step(pi: np.ndarray, win: np.ndarray, eta: float) -> np.ndarray:
    """Exact SPPO (MWU): π_{t+1} ∝ π_t · exp(η·P(y≻π_t)), with ``win`` = P(y≻π_t) [X, Y]."""
    with np.errstate(divide="ignore"):
        return np.exp(log_softmax(np.log(pi) + eta * win, axis=-1))


def row_mean_win_rates(pairs: np.ndarray, k: int) -> np.ndarray:
    """P̂(y_i) = (1/K)·Σ_j M_ij for the K×K matrix M with M_ii = ½, M_ij = b_ij and M_ji = 1 − b_ij
    (i < j), from the labels ``pairs`` [n, K(K−1)/2] in ``np.triu_indices(K, 1)`` order; [n, K]."""
    i, j = np.triu_indices(k, 1)
    m = np.full((pairs.shape[0], k, k), 0.5)
    m[:, i, j] = pairs
    m[:, j, i] = 1.0 - pairs
    return m.mean(axis=-1)


def sppo_loss(log_new: torch.Tensor, log_old: torch.Tensor, win_hat: torch.Tensor,
              eta: float) -> torch.Tensor:
    """(log π_θ(y) − log π_t(y) − η(P̂(y) − ½))², averaged: SPPO's square loss with log Z ≈ η/2."""
    return ((log_new - log_old - eta * (win_hat - 0.5)) ** 2).mean()


class AverageIterate:
    """Mixin: tracks π̄_T = (1/T)·Σ_{t=1..T} π_t (π_0 before the first step) where the game's
    response table may be read each iteration, and logs ``game/avg_exploitability`` on exact games.
    The no-regret guarantees of self-play on the unregularized game are for π̄_T, not π_T."""

    _extra_state = ("avg_pi",)

    def start_average(self) -> None:
        # None where the responses cannot be listed (last iterate only)
        self.avg_pi = self.policy_probs() if self.game.table_readable else None

    def update_average(self) -> None:
        """Call at the end of ``step`` (``self.iteration`` is the number of steps before it)."""
        if self.avg_pi is not None:
            self.avg_pi += (self.policy_probs() - self.avg_pi) / (self.iteration + 1)

    def average_policy_probs(self) -> np.ndarray:
        """π̄_T [X, Y].

        Raises:
            ValueError: the game's response table cannot be read each iteration, so no average is tracked.
        """
        if self.avg_pi is None:
            raise ValueError(f"no average iterate on a game whose response table is not read each iteration "
                             f"({type(self.game).__name__}); {type(self).__name__} keeps the last iterate there")
        return self.avg_pi.copy()

    def evaluate(self) -> dict[str, float]:
        out = super().evaluate()
        if self.exact_preference:
            out[metrics.AVG_EXPLOITABILITY] = self.game.exploitability(self.avg_pi)
        return out


class SPPO(AverageIterate, Algorithm):
    """SPPO (self-play preference optimization) for the unregularized game max_π min_π' P(π≻π').

    Paper: Wu, Sun, Yuan, Ji, Yang, Gu (2024), "Self-Play Preference Optimization for Language
    Model Alignment", arXiv:2405.00675.

    Exact mode: π_{t+1} ∝ π_t · exp(η·P(y≻π_t)) (multiplicative weights in self-play). The game is
    unregularized (``beta`` = 0; β_SPPO = 1/η is only the per-step KL weight), so it is judged by
    exploitability: MWU regret gives exploitability(π̄_T) ≤ log|Y|/(ηT) + η/8 for the average
    iterate π̄_T = (1/T)Σ_{t=1..T} π_t (:meth:`average_policy_probs`, logged as
    ``game/avg_exploitability``); the last iterate may cycle.

    Sample mode: per prompt draw K responses from π_t (K counted samples). ``labels="comparison"``
    queries each unordered pair once (K(K−1)/2 counted comparisons), fills the transposed entry by
    antisymmetry (1 − b) and sets the diagonal to ½ without a query (P(y≻y) = ½ by definition);
    ``labels="prob"`` reads exact probabilities instead (one counted oracle call per pair, also
    added to ``cost/queries``). P̂(y_i) = row mean of that K×K matrix, self included, so
    E[P̂ − ½ | y] = ((K−1)/K)·(P(y≻π_t) − ½). Loss (:func:`sppo_loss`):
    L(θ) = E[(log π_θ(y) − log π_t(y) − η(P̂(y) − ½))²]. This is SPPO's c ≡ 0 approximation
    log Z_t ≈ η/2: the exact log-partition is η/2 + log E_{π_t} exp(η(P(y≻π_t) − ½)), whose second
    term is O(η²·Var) ≥ 0, so the minimizer (a normalized tabular π_θ cannot absorb the offset) is
    close to, not equal to, the MWU step. The average iterate is tracked from ``policy_probs`` where
    the game's response table may be read each iteration (``game.table_readable``); elsewhere (a
    language model, a large :class:`~prefzoo.envs.token.TokenOracle`) SPPO keeps the last iterate only, as the paper
    does on language models (its §4: each iteration's model is the next one's π_t; no average).

    Args:
        eta: step size η > 0. Larger η moves faster but raises the η/8 floor of the average
            iterate and makes the last iterate cycle; the sample loss is accurate for η·Var ≪ 1.
        k: K ≥ 2 responses per prompt (K(K−1)/2 comparisons each).
        labels: ``"comparison"`` (Bernoulli, counted) or ``"prob"`` (exact probabilities).
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`. The defaults (η 0.5, batch 256,
            lr 0.05, 20 grad steps) are the tuned ones of ``zoo_configs/sppo.yml``.

    Raises:
        ValueError: eta ≤ 0, k < 2 or an unknown ``labels``.
    """

    def __init__(self, env, seed: int = 0, mode: str = "exact", eta: float = 0.5, k: int = 5,
                 labels: str = "comparison", policy: str = "tabular", lr: float = 0.05,
                 batch_size: int = 256, grad_steps: int = 20, device: str = "cpu"):
        eta, k = check_real("eta", eta, 0, low_open=True), check_int("k", k, low=2)
        check_choice("labels", labels, LABELS)
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        self.eta, self.k, self.labels = float(eta), int(k), labels
        self.start_average()

    def _labels(self, x: np.ndarray, y: np.ndarray, y2: np.ndarray) -> np.ndarray:
        if self.labels == "comparison":
            return self.compare(x, y, y2)
        before = self.game.exact_calls
        probs = self.game.prob(x, y, y2)
        self.queries += self.game.exact_calls - before
        return probs

    def step(self):
        diagnostics = {}
        if self.mode == "exact":
            self.pi = sppo_step(self.pi, self.game.win_rates(self.pi), self.eta)
        else:
            x = self.game.sample_contexts(self.batch_size, self.rng)
            ys = self.sample_responses(np.tile(x, self.k)).reshape(self.k, -1).T  # [n, K], one batched draw
            i, j = np.triu_indices(self.k, 1)
            win_hat = row_mean_win_rates(self._labels(x[:, None], ys[:, i], ys[:, j]), self.k)
            xs = self.tensor(np.repeat(x, self.k), torch.long)
            ys_t, target = self.tensor(ys.ravel(), torch.long), self.tensor(win_hat.ravel())
            with torch.no_grad():
                log_old = self.policy.log_prob(xs, ys_t)
            diagnostics[metrics.LOSS] = self.fit(
                lambda: sppo_loss(self.policy.log_prob(xs, ys_t), log_old, target, self.eta))
        self.update_average()
        return diagnostics
