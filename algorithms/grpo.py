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
from prefzoo.envs.checks import check_bool, check_choice, check_int, check_probability, check_real

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


LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
KL_ESTIMATORS = ("sequence", "token")
SCALE_REWARDS = ("group", "batch", "none")


def group_advantages(rewards, scale: str = "group", eps: float = 1e-4):
    """A = (r − mean_group r)/(s + ε) for rewards [n, G]: s the group's std (``"group"``, DeepSeekMath;
    torch's unbiased std), the whole batch's (``"batch"``), or no division (``"none"``, Dr. GRPO), as
    TRL's ``scale_rewards``."""
    centered = rewards - rewards.mean(-1, keepdim=True)
    if scale == "none":
        return centered
    return centered / ((rewards.std(-1, keepdim=True) if scale == "group" else rewards.std()) + eps)


def k3_kl(log_ref, log_new):
    """Schulman's k3 estimator μ/π − log(μ/π) − 1 ≥ 0 of the KL to μ, per sample (or per token)."""
    log_ratio = log_ref - log_new
    return log_ratio.exp() - log_ratio - 1


def clipped_objective(log_new, log_old, advantages, clip: float):
    """PPO's surrogate min(ρA, clip(ρ, 1−ε, 1+ε)A), ρ = π_θ/π_old, per sample (or per token)."""
    ratio = (log_new - log_old).exp()
    return torch.minimum(ratio * advantages, ratio.clamp(1 - clip, 1 + clip) * advantages)


def token_log_probs(policy, xs: torch.Tensor, ys: torch.Tensor, reference: bool = False):
    """(log π(y_t|x, y_<t) [n, T], 0 past each response's end; the response mask [n, T]) under π_θ,
    or π_ref without gradient, from one forward pass. A policy without ``token_log_probs`` (tabular,
    and the sequence policies of the token games) gives each response as one token: T = 1."""
    if hasattr(policy, "token_log_probs"):
        return policy.token_log_probs(xs, ys, reference=reference)
    log_p = policy.ref_log_prob(xs, ys) if reference else policy.log_prob(xs, ys)
    return log_p[:, None], torch.ones_like(log_p, dtype=torch.bool)[:, None]


def aggregate(per_token, mask, loss_type: str, max_tokens: int):
    """The batch loss from per-token losses ℓ_it [n, T] over the mask's tokens:
    ``"grpo"`` (DeepSeekMath): (1/n) Σ_i (1/|y_i|) Σ_t ℓ_it;
    ``"dapo"`` (Yu et al. 2025, arXiv:2503.14476, token level): Σ_i Σ_t ℓ_it / Σ_i |y_i|;
    ``"dr_grpo"`` (Liu et al. 2025, arXiv:2503.20783): Σ_i Σ_t ℓ_it / (n · ``max_tokens``), a constant
    (TRL: ``max_completion_length``). With one token per response (|y_i| = 1, ``max_tokens`` = 1) the
    three are the same mean over responses."""
    total = torch.where(mask, per_token, 0.0)
    if loss_type == "grpo":
        return (total.sum(1) / mask.sum(1).clamp(min=1)).mean()
    return total.sum() / (mask.sum().clamp(min=1) if loss_type == "dapo" else mask.shape[0] * max_tokens)


def clipped_policy_update(algo: Algorithm, x: np.ndarray, y: np.ndarray, advantages: torch.Tensor, clip: float,
                          kl_coef: float, loss_type: str = "grpo", kl: str = "token", max_tokens: int = 1,
                          kl_correction: bool = False) -> float:
    """``algo.fit`` on the loss ``aggregate``(−min(ρ_t A, clip(ρ_t) A) [+ β·k3_t]) [+ β·mean_i k3_i] over
    the samples (x, y) drawn from the current policy (per-token ratios ρ_t = π_θ(y_t|·)/π_old(y_t|·));
    ``kl`` = ``"token"``: k3 per token, exp(r_t) − r_t − 1 with r_t = log π_ref(y_t|·) − log π_θ(y_t|·),
    aggregated with the loss (as TRL); ``"sequence"``: k3 of the sequence log-ratio, averaged over the
    responses. ``kl_correction`` multiplies each k3 term by its ratio π_θ/π_old (per token, or the
    response's): E_{π_old}[ρ·k3] = E_{π_θ}[k3], the KL estimate at π_θ from π_old's samples (DeepSeek-AI
    2025, DeepSeek-V3.2, arXiv:2512.02556; TRL's ``use_bias_correction_kl``); ρ·μ/π_θ = μ/π_old is fixed
    at sampling, so the term no longer grows as exp(log μ − log π_θ) when a step cuts π_θ(y) far
    below μ(y). Returns the last loss. π_old's log-probs are those of the first step's own forward,
    detached (π_θ = π_old there), so no separate forward is spent on them, and π_ref is read only when
    ``kl_coef`` > 0."""
    xs, ys = algo.tensor(x, torch.long), algo.tensor(y, torch.long)
    log_ref = None
    if kl_coef:
        with torch.no_grad():
            log_ref = token_log_probs(algo.policy, xs, ys, reference=True)[0]
        log_ref = log_ref if kl == "token" else log_ref.sum(1)
    log_old = None

    def penalty(ref, new, old):
        return k3_kl(ref, new) * ((new - old).exp() if kl_correction else 1.0)

    def loss_fn():
        nonlocal log_old
        log_new, mask = token_log_probs(algo.policy, xs, ys)
        if log_old is None:
            log_old = log_new.detach()
        per_token = -clipped_objective(log_new, log_old, advantages[:, None], clip)
        if kl_coef and kl == "token":
            per_token = per_token + kl_coef * penalty(log_ref, log_new, log_old)
        loss = aggregate(per_token, mask, loss_type, max_tokens)
        if kl_coef and kl == "sequence":
            loss = loss + kl_coef * penalty(log_ref, log_new.sum(1), log_old.sum(1)).mean()
        return loss

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

    On a language model (a policy with ``token_log_probs``) the ratio is per token,
    ρ_it = π_θ(y_it|x, y_i<t)/π_old(y_it|x, y_i<t), as in the paper and TRL, and ``loss_type``
    aggregates the per-token losses (:func:`aggregate`): ``"grpo"`` (the paper's mean over each
    response's tokens, then over responses), ``"dr_grpo"`` (a sum over tokens divided by n times
    the constant ``max_new_tokens``, and by default no std division: Liu et al. 2025,
    arXiv:2503.20783) or ``"dapo"`` (a mean over all tokens of the batch: Yu et al. 2025,
    arXiv:2503.14476). ``kl="token"`` puts k3 on each token (TRL's per-token KL), ``"sequence"`` on
    the response log-ratio. Where a response is one action (bandit games, tabular policies; the
    sequence policies of the token games, whose log_prob is the response's) the three aggregations
    and the two KL placements coincide, and the loss is the formula above.

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
        loss_type: ``"grpo"``, ``"dr_grpo"`` or ``"dapo"`` (TRL's names), see above.
        kl: ``"token"`` (default, as TRL) or ``"sequence"``: where k3 is taken, see above.
        kl_correction: weight each k3 term by its ratio π_θ/π_old (:func:`clipped_policy_update`).
            Without it, from the second epoch on k3 = exp(log μ − log π_θ) − … is evaluated where the
            first step moved π_θ off the samples: on LMGame-v0 (zoo config, seed 1, iteration 7) one
            response fell 16.3 nats below π_ref, its k3 was 1.2e7, the gradient norm 2.8e6 (≈ 3
            otherwise), and Adam's second moment, inflated 1e10 and decaying by 0.999 a step, froze the
            policy at π_ref for the rest of the run. It also turns the penalty's gradient at
            π_θ = π_old into that of KL(π_θ‖μ) (k3's own is KL(μ‖π_θ)'s), so it is off by default: the
            bandit configs were tuned without it.
        scale_rewards: ``"group"`` (divide by the group's std), ``"batch"`` (by the batch's) or
            ``"none"`` (TRL's names); None: ``"none"`` for ``dr_grpo``, else ``"group"``.
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
                 lr: float = 0.006, batch_size: int = 32, device: str = "cpu", loss_type: str = "grpo",
                 kl: str = "token", scale_rewards: str | None = None, kl_correction: bool = False):
        group_size = check_int("group_size", group_size, low=2)  # rewards compare within a group
        clip = check_probability("clip", clip, low_open=True, high_open=True)
        beta = check_real("beta", beta, 0)  # 0 disables the k3 penalty
        n_epochs = check_int("n_epochs", n_epochs, low=1)
        lr_decay_start = check_int("lr_decay_start", lr_decay_start, low=0)  # 0: constant lr
        self.loss_type = check_choice("loss_type", loss_type, LOSS_TYPES)
        self.kl = check_choice("kl", kl, KL_ESTIMATORS)
        self.kl_correction = check_bool("kl_correction", kl_correction)
        default_scale = "none" if loss_type == "dr_grpo" else "group"
        self.scale_rewards = check_choice("scale_rewards", scale_rewards or default_scale, SCALE_REWARDS)
        super().__init__(env, seed, mode, policy, lr, batch_size, n_epochs, device)
        self.group_size, self.clip, self.beta = int(group_size), clip, beta
        self.lr_decay_start = int(lr_decay_start)
        per_token = hasattr(self.policy, "token_log_probs")
        self.max_tokens = int(self.game.max_new_tokens) if per_token else 1  # Dr. GRPO's constant

    def advantages(self, rewards: torch.Tensor) -> torch.Tensor:
        """A [n, G] from the group rewards [n, G]: centred within each group, scaled by ``scale_rewards``."""
        return group_advantages(rewards, self.scale_rewards)

    def step(self):
        n, G = self.batch_size, self.group_size
        x = np.repeat(self.game.sample_contexts(n, self.rng), G)
        y = self.sample_responses(x)
        if self.game.has_reward:
            rewards = self.read_rewards(x, y).reshape(n, G)
        else:
            rewards = group_win_rewards(compare_within_groups(self, x.reshape(n, G), y.reshape(n, G)))
        advantages = self.advantages(self.tensor(rewards)).reshape(-1)
        if self.lr_decay_start:
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * min(1.0, self.lr_decay_start / (self.iteration + 1))
        loss = clipped_policy_update(self, x, y, advantages, self.clip, self.beta, self.loss_type, self.kl,
                                     self.max_tokens, self.kl_correction)
        return {metrics.LOSS: loss, metrics.REWARD_STD: float(rewards.std(-1).mean())}
