"""Online DPO and online IPO: the offline preference losses applied to fresh on-policy pairs.

Each iteration draws two responses per prompt from the current policy π_θ, asks the oracle for
one comparison, and takes gradient steps on DPO's logistic loss or IPO's square loss of the
log-ratio margin Δ against μ = π_ref. The sampling distribution is held fixed inside the loss
(stop-gradient), so the dynamics are a stochastic gradient flow whose stationary points are
stated below: online IPO's is exactly the regularized equilibrium π*_β (the same β), online
DPO's has no closed form on intransitive games. On a game with a scalar reward
(``game.has_reward``) the pair is labelled by the rewards, as TRL's online DPO labels by a reward
model (online IPO too; the limits below then hold with P(y ≻ y') replaced by that label). One
class, :class:`OnlineDPO`, whose ``loss`` class attribute selects the loss; :class:`OnlineIPO`
only fixes it.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_real

from .base import Algorithm

LOSSES = ("sigmoid", "ipo")


def reward_labels(rewards: np.ndarray, rewards2: np.ndarray) -> np.ndarray:
    """b = 1{r(y) > r(y')}, ½ at a tie: the duel's label from the two rewards."""
    return (rewards > rewards2) + 0.5 * (rewards == rewards2)


def preference_loss(margin, label, beta: float, loss: str, weight=None):
    """Loss of the log-ratio margin Δ = h(y) − h(y'), h = log π_θ − log μ, given b = 1{y ≻ y'}.

    ``sigmoid`` (DPO): −log σ(β·(2b−1)·Δ); ``ipo``: ((2b−1)·Δ − 1/(2β))² = (Δ − (2b−1)/(2β))².
    With ``weight`` (e.g. exact pair probabilities and soft labels) the weighted sum is returned.
    """
    sign = 2 * label - 1
    if loss == "sigmoid":
        per = -(label * F.logsigmoid(beta * margin) + (1 - label) * F.logsigmoid(-beta * margin))
    else:
        per = (margin - sign / (2 * beta)) ** 2
    return per.mean() if weight is None else (weight * per).sum()


class OnlineDPO(Algorithm):
    """Online DPO (``loss="sigmoid"``) / online IPO (``loss="ipo"``), sample mode only.

    Paper: Guo, Zhang, Liu, Liu, Khalman, Llinares, Rame, Mesnard, Zhao, Piot, Ferret, Blondel
    (2024), "Direct Language Model Alignment from Online AI Feedback", arXiv:2402.04792 (online
    DPO); Calandriello, Guo, Munos, Rowland, Tang, Pires, Richemond, Le Lan, Valko, Liu, Joshi,
    Zheng, Piot (2024), "Human Alignment of Large Language Models through Online Preference
    Optimisation", arXiv:2403.08635 (online IPO).

    Sample mode: per prompt x draw y, y' ~ π_θ (frozen for the iteration) and one comparison
    b = 1{y ≻ y'} (on a ``has_reward`` game: b = 1{r(y) > r(y')}, ½ at a tie, from two reward
    queries, :func:`reward_labels`); with Δ = [log π_θ(y) − log μ(y)] − [log π_θ(y') − log μ(y')] take
    ``grad_steps`` Adam steps on the batch mean of (:func:`preference_loss`)
    DPO: −log σ(β(2b−1)Δ)   or   IPO: (Δ − (2b−1)/(2β))².

    Limits (population loss with the sampling weights π(y)π(y') held fixed):
    IPO: the gradient vanishes iff h(y) − E_π h = (P(y≻π) − ½)/β for every y, i.e.
    π ∝ μ·exp(P(y≻π)/β): **online IPO's fixed point is π*_β = ``game.nash(beta)``, the same β**
    (IPO's target 1/(2β) per duel is (P − ½)/β in expectation). This is ``target_policy()``.
    DPO: the stationary point solves Σ_y' π(y')[σ(β(h(y) − h(y'))) − P(y≻y')] = 0 for all y; on
    Bradley–Terry games it is π ∝ μ·exp(r/β) (the RLHF optimum), on intransitive games it has no
    closed form, so ``target_policy()`` is None and DPO is judged by exploitability.

    Args:
        beta: β > 0, the KL strength of the game (IPO: π*_β) and DPO's logistic temperature.
            IPO's regression target (2b−1)/(2β) grows as β shrinks, so small β needs a
            smaller ``lr`` or a larger ``batch_size``.
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`; ``grad_steps`` > 1 reuses a
            batch after π_θ has moved (slightly off-policy; the fixed point is unchanged).
    """

    supported_modes = ("sample",)
    loss: ClassVar[str] = "sigmoid"

    def __init__(self, env, seed: int = 0, mode: str = "sample", beta: float = 0.1, policy: str = "tabular",
                 lr: float = 0.05, batch_size: int = 64, grad_steps: int = 1, device: str = "cpu"):
        beta = check_real("beta", beta, 0, low_open=True)
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        self.beta = beta

    def target_policy(self):
        return self.game.nash(self.beta) if self.loss == "ipo" else None

    def regularization(self) -> float:
        return self.beta

    def step(self):
        x, y, y2 = self.sample_pairs()
        if self.game.has_reward:
            b = self.tensor(reward_labels(*self.read_rewards(np.concatenate([x, x]), np.concatenate([y, y2]))
                                          .reshape(2, -1)))
        else:
            b = self.tensor(self.compare(x, y, y2))
        xs, ys, ys2 = (self.tensor(a, torch.long) for a in (x, y, y2))
        ref_y, ref_y2 = self.policy.ref_log_prob(xs, ys), self.policy.ref_log_prob(xs, ys2)

        def loss_fn():
            margin = (self.policy.log_prob(xs, ys) - ref_y) - (self.policy.log_prob(xs, ys2) - ref_y2)
            return preference_loss(margin, b, self.beta, self.loss)

        return {metrics.LOSS: self.fit(loss_fn)}


class OnlineIPO(OnlineDPO):
    """Online IPO: :class:`OnlineDPO` with ``loss="ipo"``; converges to π*_β."""

    loss = "ipo"
