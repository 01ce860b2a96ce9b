"""SPO: self-play preference optimization, "a minimaximalist approach": one policy, each response
rewarded by its win rate against the policy's other responses to the same prompt, trained by a
policy gradient (PPO's clipped ratio). It is GRPO's loop with the raw win rate as advantage.

Paper: Swamy, Dann, Kidambi, Wu, Agarwal (2024), "A Minimaximalist Approach to Reinforcement
Learning from Human Feedback", ICML, arXiv:2401.04056.
"""

from __future__ import annotations

import torch

from .grpo import GRPO
from .sppo import AverageIterate


class SPO(AverageIterate, GRPO):
    """SPO for the minimax winner max_π min_π' P(π≻π'), sample mode only.

    Paper: Swamy et al. (2024), SPO, ICML, arXiv:2401.04056.

    Sample mode: per prompt G responses from π_t; every pair of distinct responses is compared
    once (identical ones tie at ½ without a query); the reward of y_i is its win rate against the
    other G − 1 (their Algorithm 1: the share of the other trajectories it beats), unbiased for
    P(y_i≻π_t), and the advantage is r_i − ½: the exact baseline E_{π_t} P(y≻π_t) = ½, also the
    group's mean reward exactly. Unlike GRPO (:class:`~prefzoo.algorithms.grpo.GRPO`, whose loop
    this is) the advantage is not divided by the group's spread, so the update is the policy
    gradient of the win rate itself, and there is no KL penalty by default (``beta=0``: the paper
    has no reference policy). Claim: self-play no-regret learning on this reward reaches the
    minimax winner (the Condorcet winner where one exists) without a reward model, robust to
    intransitive preferences (their theorems bound the average iterate π̄_T, logged as
    ``game/avg_exploitability``). Measured (``benchmarks/last_iterate.py``): on a cyclic game the
    last iterate of this unregularized policy gradient orbits the equilibrium, while π̄_T converges.
    No exact mode: the paper leaves the RL algorithm open (PPO in its experiments).

    Args: as :class:`~prefzoo.algorithms.grpo.GRPO` (``group_size`` is the paper's number of
        trajectories compared; ``beta`` > 0 adds GRPO's k3 penalty toward π_ref, placed by ``kl`` and
        weighted by ``kl_correction``; ``loss_type`` aggregates a language model's per-token terms),
        less ``scale_rewards``: SPO's advantage is never scaled.
    """

    def __init__(self, env, seed: int = 0, mode: str = "sample", group_size: int = 4, clip: float = 0.2,
                 beta: float = 0.0, n_epochs: int = 4, lr_decay_start: int = 400, policy: str = "tabular",
                 lr: float = 0.006, batch_size: int = 32, device: str = "cpu", loss_type: str = "grpo",
                 kl: str = "token", kl_correction: bool = False):
        super().__init__(env, seed, mode, group_size=group_size, clip=clip, beta=beta, n_epochs=n_epochs,
                         lr_decay_start=lr_decay_start, policy=policy, lr=lr, batch_size=batch_size, device=device,
                         loss_type=loss_type, kl=kl, kl_correction=kl_correction)
        self.start_average()

    def step(self):
        diagnostics = super().step()
        self.update_average()
        return diagnostics

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """A_i = r_i − ½ (no standardization)."""
        return rewards - 0.5
