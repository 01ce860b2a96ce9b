"""J-BOND: Jeffreys-divergence Best-of-N distillation against a moving (EMA) anchor, the practical
BOND variant that needs only two anchor samples per prompt. Helpers: the crude log-quantile reward
(:func:`crude_reward`) and the Jeffreys loss (:func:`jeffreys_loss`), followed by the algorithm
class :class:`JBOND` (sample mode only: its forward/backward estimators have no closed-form
exact counterpart).
"""

from __future__ import annotations

import numpy as np
import torch

from prefzoo.envs import metrics

from .base import Algorithm

LOG16 = float(np.log(16.0))


def crude_reward(beats_first: np.ndarray, beats_second: np.ndarray) -> np.ndarray:
    """r_J(y) = −log 16 if y loses to both anchor samples, else 0 (the crude log-quantile)."""
    return -LOG16 * (1.0 - beats_first) * (1.0 - beats_second)


def jeffreys_loss(log_best: torch.Tensor, log_own: torch.Tensor, advantage: torch.Tensor,
                  beta_j: float) -> torch.Tensor:
    """(1−β_J)·[−mean log π_θ(y_best)] + β_J·mean(advantage·log π_θ(y)), ``advantage`` detached.

    The first term is the forward KL(BoN_2(π_anc) ‖ π_θ) on the winners of the anchor duels, the
    second the REINFORCE surrogate of the backward KL whose per-sample cost is
    log π_θ(y) − log π_anc(y) − r_J(y) (minus its batch mean as a baseline).
    """
    return (1 - beta_j) * -log_best.mean() + beta_j * (advantage * log_own).mean()


class JBOND(Algorithm):
    """J-BOND: distill the Best-of-2 of an EMA anchor with a Jeffreys divergence (sample mode only).

    Paper: Sessa, Dadashi, Hussenot, et al. (2024), "BOND: Aligning LLMs with Best-of-N
    Distillation", arXiv:2407.14622 (Section 5, J-BOND). *(reconstruction: the full text was not
    available; the formulas below follow the paper's abstract and the standard BOND identities.)*

    Per prompt x: two anchor samples y'_1, y'_2 ∼ π_anc and one policy sample y ∼ π_θ (3 counted
    samples); one counted comparison y'_1 vs y'_2 gives y_best ∼ BoN_2(π_anc) exactly (any P),
    and two counted comparisons y vs y'_1, y'_2 give the crude reward r_J(y) = −log 16 if y loses
    to both, else 0 (:func:`crude_reward`). It stands in for the log-quantile log p(y) in
    log BoN_2(π_anc)(y) = log π_anc(y) + log 2 + log p(y), whose two-sample estimate takes the
    values 0 / −log 2 / −∞ (beats both / one / none): the −∞ is replaced by −log 16 and −log 2 by 0.
    Loss (:func:`jeffreys_loss`), J_β = (1−β_J)·KL(BoN_2(π_anc) ‖ π_θ) + β_J·KL(π_θ ‖ BoN_2(π_anc)):
    L(θ) = −(1−β_J)·E[log π_θ(y_best)] + β_J·E[sg(c(y) − mean c)·log π_θ(y)],
    c(y) = log π_θ(y) − log π_anc(y) − r_J(y). After the update the anchor's parameters move by
    EMA: θ_anc ← (1−γ)·θ_anc + γ·θ.

    Target: each step distills BoN_2 of the anchor; with the anchor tracking π (γ > 0) the
    population stationary points satisfy (1−β_J)·2P(y≻π) + β_J·r̄(y) = const on the support, with
    r̄ = −log 16·(1 − P(y≻π))² increasing in P(y≻π), hence P(y≻π) = ½ on the support: restricted
    von Neumann winners, with no reference regularization. So there is no regularized target
    (``target_policy()`` is None) and J-BOND is judged by exploitability and win rates.

    Args:
        beta_j: Jeffreys mix β_J ∈ [0, 1] (0: forward KL only, 1: backward only; paper 0.5).
        gamma: EMA rate γ ∈ (0, 1] of the anchor (1: the anchor is the last policy). A faster
            anchor improves faster on transitive games (γ 0.1 vs 0.02 in ``zoo_configs/jbond.yml``)
            and cycles faster on intransitive ones.
        (others): see :class:`~prefzoo.algorithms.base.Algorithm` (defaults: lr 0.05, batch 64,
            5 grad steps).

    Raises:
        ValueError: beta_j outside [0, 1], gamma outside (0, 1], or ``mode="exact"``.
    """

    supported_modes = ("sample",)
    _extra_state = ("anchor",)

    def __init__(self, env, seed: int = 0, mode: str = "sample", beta_j: float = 0.5,
                 gamma: float = 0.1, policy: str = "tabular", lr: float = 0.05,
                 batch_size: int = 64, grad_steps: int = 5, device: str = "cpu"):
        if not 0 <= beta_j <= 1:
            raise ValueError(f"beta_j must be in [0, 1], got {beta_j}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        self.beta_j, self.gamma = float(beta_j), float(gamma)
        self.anchor = self.snapshot()

    def step(self):
        x = self.game.sample_contexts(self.batch_size, self.rng)
        anchor_1, anchor_2 = self.anchor.sample(x, self.rng), self.anchor.sample(x, self.rng)
        self.samples += 2 * len(x)
        best = np.where(self.compare(x, anchor_1, anchor_2) > 0.5, anchor_1, anchor_2)
        y = self.sample_responses(x)
        reward = crude_reward(self.compare(x, y, anchor_1), self.compare(x, y, anchor_2))
        xs, ys = self.tensor(x, torch.long), self.tensor(y, torch.long)
        best_t = self.tensor(best, torch.long)
        with torch.no_grad():
            log_anchor = self.anchor.log_prob(xs, ys)

        def loss_fn():
            log_own = self.policy.log_prob(xs, ys)
            cost = log_own.detach() - log_anchor - self.tensor(reward)
            log_best = self.policy.log_prob(xs, best_t)
            return jeffreys_loss(log_best, log_own, cost - cost.mean(), self.beta_j)

        loss = self.fit(loss_fn)
        with torch.no_grad():
            for anchor_p, p in zip(self.anchor.parameters(), self.policy.parameters(), strict=True):
                anchor_p.lerp_(p, self.gamma)
        return {metrics.LOSS: loss}
