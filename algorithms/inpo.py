"""INPO: iterative Nash policy optimization, self-play online mirror descent on the β-regularized
preference game learned through a loss over preference pairs, with no per-response win-rate
estimate and no log-partition to learn.

Paper: Zhang, Yu, Ye, Liu, Gu, Wang, Zhou, Yang (2025), "Iterative Nash Policy Optimization:
Aligning LLMs with General Preferences via No-Regret Learning", ICLR, arXiv:2407.00617.
"""

from __future__ import annotations

import numpy as np
import torch

from prefzoo.envs import metrics

from .base import Algorithm
from .wind import check_omd_step, omd_log_ratio, wind_step


def pair_loss(h_first, h_second, target, weight=None):
    """(h(y) − h(y') − t)², averaged (or summed with ``weight``). With t = η(b − ½), b = 1{y≻y'},
    this is INPO's (h(y_w) − h(y_l) − η/2)², whose population minimizer over
    y, y' ~ π_t is h(y) = η·P(y≻π_t) + const; with t = η(b_yz − b_y'z), z ~ π_opp, it is
    h(y) = η·P(y≻π_opp) + const."""
    per = (h_first - h_second - target) ** 2
    return per.mean() if weight is None else (weight * per).sum()


class INPO(Algorithm):
    """INPO for max_π min_π' P(π≻π') − βKL(π‖μ) + βKL(π'‖μ), μ = π_ref (the paper's τ is β).

    Paper: Zhang et al. (2025), INPO, ICLR, arXiv:2407.00617.

    Exact mode: online mirror descent in self-play,
    π_{t+1} ∝ π_t^{1−ηβ} · μ^{ηβ} · exp(η·P(y≻π_t)) — the same step as WIND's
    (:func:`~prefzoo.algorithms.wind.wind_step`); its fixed point is π*_β, reached in the last
    iterate (the paper's convergence theorem).
    Sample mode: per prompt y, y' ~ π_t and one comparison b = 1{y≻y'}; with the log-ratio
    h_θ(y) = log π_θ(y) − (1−ηβ) log π_t(y) − ηβ log μ(y) minimize (:func:`pair_loss`)
    (h_θ(y) − h_θ(y') − η(b − ½))², the paper's loss. A difference of pairs cancels log Z, so
    nothing else is learned, and its population minimizer is the exact step. (The paper trains
    each iteration on a fresh dataset to convergence; here ``grad_steps`` Adam steps per batch.)

    Args:
        beta: KL regularization β > 0 of the game; the target is π*_β = ``game.nash(beta)``.
        eta: step size η, 0 < ηβ ≤ 1; last-iterate linear convergence in exact mode.
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`.
    """

    def __init__(self, env, seed: int = 0, mode: str = "exact", beta: float = 0.1, eta: float = 1.0,
                 policy: str = "tabular", lr: float = 0.05, batch_size: int = 256, grad_steps: int = 20,
                 device: str = "cpu"):
        beta, eta = check_omd_step(beta, eta)
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        self.beta, self.eta = beta, eta

    def target_policy(self):
        return self.game.nash(self.beta)

    def regularization(self) -> float:
        return self.beta

    def omd_step(self, opponent: np.ndarray) -> np.ndarray:
        """The exact step from π_t against ``opponent`` [X, Y] (π_t itself: INPO's self-play)."""
        with np.errstate(divide="ignore"):  # ηβ = 1 steps may leave exact zeros: log 0 = −∞
            log_pi = np.log(self.pi)
        return np.exp(wind_step(log_pi, self.log_ref, self.game.win_rates(opponent), self.eta, self.beta))

    def fit_pairs(self, xs: torch.Tensor, ys: torch.Tensor, target: np.ndarray,
                  anchor: tuple[torch.Tensor, torch.Tensor]) -> float:
        """``fit`` π_θ by :func:`pair_loss` on the pairs (y, y') of ``duel_tensors`` (xs = [x; x],
        ys = [y; y']) with targets ``target``, the step anchored at ``anchor`` = (log π_t, log μ) of ys."""
        n = len(xs) // 2
        target = self.tensor(target)

        def loss_fn():
            h = omd_log_ratio(self.policy.log_prob(xs, ys), *anchor, self.eta, self.beta)
            return pair_loss(h[:n], h[n:], target)

        return self.fit(loss_fn)

    def step(self):
        if self.mode == "exact":
            self.pi = self.omd_step(self.pi)
            return {}
        x, y, y2 = self.sample_pairs()
        xs, ys = self.duel_tensors(x, y, y2)
        b = self.compare(x, y, y2)
        return {metrics.LOSS: self.fit_pairs(xs, ys, self.eta * (b - 0.5), self.frozen_log_probs(xs, ys))}
