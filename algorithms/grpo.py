"""GRPO with a preference reward: group-relative policy optimization against the oracle.

Per prompt a group of G responses is drawn from the frozen policy π_old; every pair of distinct
responses in the group is compared once, each response's reward is its empirical win rate
against the rest of the group, the advantage is that reward standardized within the group, and
π_θ takes ``n_epochs`` Adam steps on PPO's clipped ratio objective with an optional k3 penalty
towards μ = π_ref. There is no value network and no exact mode: GRPO's group standardization
makes its stationary point depend on the within-group reward spread, so it has no closed-form
limit and is judged by exploitability. On a game with a scalar reward (``game.has_reward``, e.g.
LMGame with ``reward_funcs``) the reward of each response is read directly instead, as TRL's
GRPO does.
"""

from __future__ import annotations

import numpy as np
import torch

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_int, check_probability, check_real

from .base import Algorithm


def group_win_rewards(wins: np.ndarray) -> np.ndarray:
    """r_i = mean_{j≠i} P̂(y_i ≻ y_j) from a comparison matrix ``wins`` [n, G, G] whose
    off-diagonal entries hold 1{y_i ≻ y_j} (antisymmetric: wins + winsᵀ = 1 off the diagonal)."""
    G = wins.shape[-1]
    off = ~np.eye(G, dtype=bool)
    return (wins * off).sum(-1) / (G - 1)


def compare_within_groups(algo: Algorithm, contexts: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """The comparison matrix [n, G, G] of groups of responses [n, G] to contexts [n, G]: each pair
    i < j of distinct responses compared once through ``algo.compare`` (b_ij, b_ji = 1 − b_ij);
    identical responses, and the diagonal, tie at ½ without a query."""
    n, G = responses.shape
    wins = np.full((n, G, G), 0.5)
    i, j = np.triu_indices(G, k=1)
    rows, pair = np.nonzero(responses[:, i] != responses[:, j])
    pi, pj = i[pair], j[pair]
    b = algo.compare(contexts[rows, pi], responses[rows, pi], responses[rows, pj])
    wins[rows, pi, pj], wins[rows, pj, pi] = b, 1 - b
    return wins


def read_rewards(algo: Algorithm, contexts: np.ndarray, responses: np.ndarray) -> np.ndarray:
    """The game's counted rewards r(x, y) (a ``has_reward`` game), each one of the algorithm's queries."""
    before = algo.game.queries
    rewards = algo.game.rewards(contexts, responses)
    algo.queries += algo.game.queries - before
    return rewards


def group_advantages(rewards, eps: float = 1e-4):
    """(r − mean_group r)/(std_group r + ε) per row (torch's unbiased std, as in DeepSeekMath)."""
    return (rewards - rewards.mean(-1, keepdim=True)) / (rewards.std(-1, keepdim=True) + eps)


def k3_kl(log_ref, log_new):
    """Schulman's k3 estimator μ/π − log(μ/π) − 1 ≥ 0 of the KL to μ, per sample."""
    log_ratio = log_ref - log_new
    return log_ratio.exp() - log_ratio - 1


def clipped_objective(log_new, log_old, advantages, clip: float):
    """PPO's surrogate min(ρA, clip(ρ, 1−ε, 1+ε)A), ρ = π_θ/π_old, per sample."""
    ratio = (log_new - log_old).exp()
    return torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)


def clipped_policy_update(algo: Algorithm, x: np.ndarray, y: np.ndarray, advantages: torch.Tensor,
                          clip: float, kl_coef: float) -> float:
    """``algo.fit`` on −E[clipped ratio objective − kl_coef·k3] over the samples (x, y) drawn from
    the current policy; returns the last loss. π_old's log-probs are those of the first step's own
    forward, detached (π_θ = π_old there), so no separate forward is spent on them, and π_ref is
    read only when ``kl_coef`` > 0."""
    xs, ys = algo.tensor(x, torch.long), algo.tensor(y, torch.long)
    with torch.no_grad():
        log_ref = algo.policy.ref_log_prob(xs, ys) if kl_coef else None
    log_old = None

    def loss_fn():
        nonlocal log_old
        log_new = algo.policy.log_prob(xs, ys)
        if log_old is None:
            log_old = log_new.detach()
        objective = clipped_objective(log_new, log_old, advantages, clip)
        return -(objective - kl_coef * k3_kl(log_ref, log_new) if kl_coef else objective).mean()

    return algo.fit(loss_fn)


class GRPO(Algorithm):
    """Group relative policy optimization with a preference (win-rate) reward; sample mode only.

    Paper: Shao, Wang, Zhu, Xu, Song, Bi, Zhang, Zhang, Li, Wu, Guo (2024), "DeepSeekMath:
    Pushing the Limits of Mathematical Reasoning in Open Language Models", arXiv:2402.03300.

    Sample mode: for each of ``batch_size`` prompts x draw y_1..y_G ~ π_old. Every pair i < j
    with y_i ≠ y_j is compared once (b_ij = 1{y_i ≻ y_j}, b_ji = 1 − b_ij); identical responses
    tie at ½ without a query, so an iteration costs at most batch_size·G(G−1)/2 queries.
    r_i = mean_{j≠i} b_ij (on a ``has_reward`` game: the game's reward r(x, y_i), G queries per
    prompt),  A_i = (r_i − mean r)/(std r + 1e-4), and ``n_epochs`` full-batch
    Adam steps maximize  mean_i [min(ρ_i A_i, clip(ρ_i, 1−ε, 1+ε) A_i) − β·k3_i],
    ρ_i = π_θ(y_i)/π_old(y_i), k3_i = μ(y_i)/π_θ(y_i) − log(μ(y_i)/π_θ(y_i)) − 1.

    Limit: E[r_i | y_i] ≈ P(y_i ≻ π_old), so the update is self-play policy gradient on the
    win rate. Sampled from π_old, k3's gradient at π_θ = π_old is that of KL(μ‖π_θ) (not
    KL(π_θ‖μ)), and the advantage is divided by the group's reward spread; the stationary point
    π(y)(P(y≻π) − ½)/σ_π = β(π(y) − μ(y)) therefore has no closed form (σ_π is a random group
    std). ``target_policy()`` is None; GRPO is judged by (unregularized) exploitability.

    Args:
        group_size: G ≥ 2 responses per prompt; queries per prompt grow as G(G−1)/2.
        clip: ratio clip ε ∈ (0, 1); only matters from the second epoch on.
        beta: k3 penalty coefficient β ≥ 0 (0 disables it). Because advantages are
            standardized, β acts relative to a unit-scale reward, roughly like a regularization
            β·σ of the raw win rate (σ ≈ 0.2–0.4).
        n_epochs: Adam steps per iteration on the batch (> 1 needs the clip).
        lr_decay_start: T ≥ 0; from iteration T on the learning rate is lr·T/(t+1) (Robbins–Monro).
            A constant step makes the self-play iterate orbit the equilibrium on cyclic games
            (exploitability stalls ≈ 4× below π_ref's at 300k comparisons); the decay lets it
            settle (≈ 6×). 0 keeps lr constant.
        (others): see :class:`~prefzoo.algorithms.base.Algorithm` (its ``grad_steps`` is
            ``n_epochs`` here).
    """

    supported_modes = ("sample",)

    def __init__(self, env, seed: int = 0, mode: str = "sample", group_size: int = 4, clip: float = 0.2,
                 beta: float = 0.1, n_epochs: int = 4, lr_decay_start: int = 400, policy: str = "tabular",
                 lr: float = 0.006, batch_size: int = 32, device: str = "cpu"):
        group_size = check_int("group_size", group_size, low=2)  # rewards compare within a group
        clip = check_probability("clip", clip, low_open=True, high_open=True)
        beta = check_real("beta", beta, 0)  # 0 disables the k3 penalty
        n_epochs = check_int("n_epochs", n_epochs, low=1)
        lr_decay_start = check_int("lr_decay_start", lr_decay_start, low=0)  # 0: constant lr
        super().__init__(env, seed, mode, policy, lr, batch_size, n_epochs, device)
        self.group_size, self.clip, self.beta = int(group_size), clip, beta
        self.lr_decay_start = int(lr_decay_start)

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """A [n, G] from the group rewards [n, G]: standardized within each group."""
        return group_advantages(rewards)

    def step(self):
        n, G = self.batch_size, self.group_size
        x = np.repeat(self.game.sample_contexts(n, self.rng), G)
        y = self.sample_responses(x)
        if self.game.has_reward:
            rewards = read_rewards(self, x, y).reshape(n, G)
        else:
            rewards = group_win_rewards(compare_within_groups(self, x.reshape(n, G), y.reshape(n, G)))
        advantages = self.advantages(self.tensor(rewards)).reshape(-1)
        if self.lr_decay_start:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * min(1.0, self.lr_decay_start / (self.iteration + 1))
        loss = clipped_policy_update(self, x, y, advantages, self.clip, self.beta)
        return {metrics.LOSS: loss, metrics.REWARD_STD: float(rewards.std(-1).mean())}
