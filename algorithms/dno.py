"""DNO: direct Nash optimization, batched on-policy iterations that regress the policy's log-ratio
to the previous iterate on self-play win rates, through contrastive pairs.

Paper: Rosset, Cheng, Mitra, Santacroce, Awadallah, Xie (2024), "Direct Nash Optimization:
Teaching Language Models to Self-Improve with General Preferences", arXiv:2404.03715.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_int, check_real

from .base import Algorithm
from .grpo import compare_within_groups, group_win_rewards
from .sppo import AverageIterate, sppo_step


def dno_loss(log_ratio_first, log_ratio_second, reward_first, reward_second, eta: float, weight=None):
    """Cross-entropy of σ([(log π_θ/π_t)(y) − (log π_θ/π_t)(y')]/η) against the soft label
    σ(r(y) − r(y')), averaged, or summed with ``weight`` (their Algorithm 1 with the paper's
    η = 1/``eta``); with exact r = P(·≻π_t) its population minimizer is π_θ ∝ π_t·exp(η·r)
    (every pair's own optimum)."""
    logits = (log_ratio_first - log_ratio_second) / eta
    labels = torch.sigmoid(reward_first - reward_second)
    if weight is None:
        return F.binary_cross_entropy_with_logits(logits, labels)
    return (weight * F.binary_cross_entropy_with_logits(logits, labels, reduction="none")).sum()


class DNO(AverageIterate, Algorithm):
    """DNO for the unregularized game max_π min_π' P(π≻π') (regularized toward the previous
    iterate only).

    Paper: Rosset et al. (2024), DNO, arXiv:2404.03715.

    Exact mode: π_{t+1} ∝ π_t·exp(η·P(y≻π_t)) (their Algorithm 1's population solution, with
    r_t(y) = P(y≻π_t); the same multiplicative weights as SPPO's exact step,
    :func:`~prefzoo.algorithms.sppo.sppo_step`). Their analysis bounds the average iterate's
    distance to the equilibrium (π̄_T, logged as ``game/avg_exploitability``); the last iterate
    may cycle on intransitive games.
    Sample mode: per prompt K responses from π_t, every pair of distinct responses compared once
    (identical ones tie at ½ without a query), r̂_i = the win rate of y_i against the other K − 1
    (unbiased for P(y_i≻π_t)), and on every pair i < j the loss :func:`dno_loss`. With sampled r̂
    the soft label σ(r̂_i − r̂_j) is biased by O(Var r̂) (σ is not linear), which shrinks as K
    grows. (DNO-Prct, the paper's LM recipe, keeps only the best-versus-worst pair of each prompt
    with a hard label and a DPO loss; the all-pairs soft form here is their Algorithm 1.)

    Args:
        eta: step size η > 0 on the win rate (the paper's η, and DNO-Prct's β, is 1/η).
        k: K ≥ 2 responses per prompt (at most K(K−1)/2 comparisons each).
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`.
    """

    def __init__(self, env, seed: int = 0, mode: str = "exact", eta: float = 0.5, k: int = 4,
                 policy: str = "tabular", lr: float = 0.05, batch_size: int = 64, grad_steps: int = 20,
                 device: str = "cpu"):
        eta, k = check_real("eta", eta, 0, low_open=True), check_int("k", k, low=2)
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        self.eta, self.k = eta, int(k)
        self.start_average()

    def step(self):
        diagnostics = {}
        if self.mode == "exact":
            self.pi = sppo_step(self.pi, self.game.win_rates(self.pi), self.eta)
        else:
            n, k = self.batch_size, self.k
            x = np.repeat(self.game.sample_contexts(n, self.rng), k)
            y = self.sample_responses(x)
            wins = compare_within_groups(self, x.reshape(n, k), y.reshape(n, k))
            rewards = self.tensor(group_win_rewards(wins))
            i, j = np.triu_indices(k, 1)
            xs, ys = self.tensor(x, torch.long), self.tensor(y, torch.long)
            with torch.no_grad():
                log_old = self.policy.log_prob(xs, ys).reshape(n, k)

            def loss_fn():
                log_ratio = self.policy.log_prob(xs, ys).reshape(n, k) - log_old
                return dno_loss(log_ratio[:, i], log_ratio[:, j], rewards[:, i], rewards[:, j], self.eta)

            diagnostics[metrics.LOSS] = self.fit(loss_fn)
        self.update_average()
        return diagnostics
