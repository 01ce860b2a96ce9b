"""XPO: exploratory preference optimization, online DPO on pairs of a policy response and a
reference response, plus an optimism term that lowers the likelihood of the reference's responses.

Paper: Xie, Foster, Krishnamurthy, Rosset, Awadallah, Rakhlin (2025), "Exploratory Preference
Optimization: Harnessing Implicit Q*-Approximation for Sample-Efficient RLHF", ICLR,
arXiv:2405.21046.
"""

from __future__ import annotations

import torch

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_real

from .online_dpo import OnlineDPO, preference_loss


class XPO(OnlineDPO):
    """XPO, sample mode only (its update is an argmin over the whole history: no exact form).

    Paper: Xie et al. (2025), XPO, ICLR, arXiv:2405.21046.

    Sample mode: per prompt x draw y ~ π_θ and ỹ ~ π_ref, one comparison b = 1{y≻ỹ}; with
    Δ = [log π_θ(y) − log μ(y)] − [log π_θ(ỹ) − log μ(ỹ)] take ``grad_steps`` Adam steps on
    −log σ(β(2b−1)Δ) + α·log π_θ(ỹ), averaged over the batch (their Algorithm 1's objective). The
    optimism term α·log π_θ(ỹ) pushes mass off the reference's responses, which the paper shows
    explores like an upper-confidence bonus in the Bradley–Terry (reward-based) setting. (The
    paper sums the losses over all past iterations; here, as in TRL's XPO trainer, each
    iteration's fresh batch only.) At α = 0 on a Bradley–Terry game the population minimizer is
    the RLHF optimum π ∝ μ·exp(r/β); on intransitive games it has no closed form, so XPO is judged
    by exploitability (``target_policy()`` is None).

    Args:
        beta: β > 0, the KL strength (DPO's temperature).
        alpha: α ≥ 0, the weight of the optimism term (0: online DPO against π_ref's responses).
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`.
    """

    def __init__(self, env, seed: int = 0, mode: str = "sample", beta: float = 0.1, alpha: float = 1e-3,
                 policy: str = "tabular", lr: float = 0.05, batch_size: int = 64, grad_steps: int = 1,
                 device: str = "cpu"):
        alpha = check_real("alpha", alpha, 0)
        super().__init__(env, seed, mode, beta, policy, lr, batch_size, grad_steps, device)
        self.alpha = alpha

    def step(self):
        x = self.game.sample_contexts(self.batch_size, self.rng)
        y, y_ref = self.sample_responses(x), self.game.sample_ref(x, self.rng)
        self.samples += len(x)
        b = self.tensor(self.compare(x, y, y_ref))
        xs, ys, ys_ref = (self.tensor(a, torch.long) for a in (x, y, y_ref))
        ref_y, ref_y_ref = self.policy.ref_log_prob(xs, ys), self.policy.ref_log_prob(xs, ys_ref)

        def loss_fn():
            log_y_ref = self.policy.log_prob(xs, ys_ref)
            margin = (self.policy.log_prob(xs, ys) - ref_y) - (log_y_ref - ref_y_ref)
            return preference_loss(margin, b, self.beta, self.loss) + self.alpha * log_y_ref.mean()

        return {metrics.LOSS: self.fit(loss_fn)}
