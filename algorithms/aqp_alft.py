"""AQP-ALFT: GRPO-style answer-level fine-tuning whose log-reward comes from an estimator table.

On an :class:`~prefzoo.envs.answer.AnswerGame`, K traces of one prompt are sampled, their answers
counted, and each trace is rewarded with the answer-level reward of the utility, with log ν(z)
read from a lookup table g[k] (``plugin``, ``loo_plugin``, ``digamma``, ``minimax``, ``aqp``;
:mod:`prefzoo.envs.estimators`) and ν(z) from the unbiased U-statistic. The update is GRPO's
clipped-ratio step (:func:`~prefzoo.algorithms.grpo.clipped_objective`). The estimator's bias
shifts the stationary point of the estimated game away from argmax F; its variance slows it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from prefzoo.envs import metrics
from prefzoo.envs.answer import UTILITIES, estimator_tables, group_counts, group_rewards
from prefzoo.envs.checks import check_choice, check_int, check_probability, check_real
from prefzoo.envs.estimators import table

from .base import Algorithm
from .grpo import clipped_policy_update, group_advantages

ADVANTAGES = ("grpo", "mean", "none")
_CLOSED_FORM = ("plugin", "loo_plugin", "digamma")  # tables at any K without a solve (pooling)


@lru_cache(maxsize=256)
def _pooled_table(name: str, K: int) -> np.ndarray:
    return table(name, K)


class AQPALFT(Algorithm):
    """Answer-level fine-tuning with table log-reward estimators (sample mode, answer games).

    Paper: Mohri, Schneider, Zhong (2026), "Generalized Distributional Alignment Games for
    Unbiased Answer-Level Fine-Tuning", arXiv:2605.02435 (AQP estimator, *reconstruction*, design
    §5); the update is GRPO's (Shao et al. 2024, arXiv:2402.03300).

    Sample mode: for each of ``batch_size`` prompts x ~ ρ draw y_1..y_K ~ π_old(·|x), answers
    z_i = extract(y_i), counts k_i = #{j: z_j = z_i}; reward (``kl``)
    r̂_i = log ρ_target(z_i|x) − g[k_i] with g = ``table(estimator, K)`` (``entropy``: −g[k_i];
    ``gini``: 1 − (k_i−1)/(K−1); ``coherence``: (k_i−1)/(K−1), unbiased). Advantage A_i (see
    ``advantage``), then ``n_epochs`` Adam steps maximizing
    mean_i [min(ρ_i A_i, clip(ρ_i, 1−ε, 1+ε) A_i) − β·k3_i], ρ_i = π_θ(y_i)/π_old(y_i).

    Limit: with an unbiased reward (and β = 0) the expected gradient is Σ_z ∇ν(z)·r(z) = ∇F, so
    the stationary point is ν* = argmax F (ν* = ρ_target for ``kl``). A table with bias
    b(p) = E_p g − log p rewards answer z with log ρ(z) − log ν(z) − b(ν(z)) in expectation
    (:func:`~prefzoo.envs.answer.expected_group_reward`): plug-in (b ≈ (1−p)/(2Kp) > 0)
    under-rewards rare answers and drives them below ρ_target. ``target_policy()`` is None (the
    limit is in answer space; ``alft/kl_answer_to_target`` measures it).

    Cost: ``cost/samples`` counts traces drawn (batch_size·K per iteration). There are no
    pairwise comparisons: ``cost/queries`` stays 0 (the reward is one count and one table lookup
    per trace, against the known target).

    Args:
        utility: ``kl`` (to the game's target), ``entropy``, ``gini`` or ``coherence``.
        estimator: log ν table, one of plugin, loo_plugin, digamma, minimax, aqp (only the log
            utilities ``kl``/``entropy`` use it; the polynomial ones always use the U-statistic).
        group_size: K ≥ 2 traces per prompt (the table's K). Plug-in's bias ≈ (1−p)/(2Kp).
        clip: ratio clip ε ∈ (0, 1).
        beta: k3 penalty towards π_ref, ≥ 0; 0 (default) keeps the game's equilibrium at argmax F,
            any β > 0 pulls it towards π_ref's marginal.
        n_epochs: Adam steps per iteration (> 1 needs the clip).
        advantage: ``grpo`` (r − mean)/(std + 1e-4) per group, ``mean`` (r − mean, no scaling;
            the step size then scales with the reward), ``none`` (raw r̂).
        pool_window: W ≥ 1 iterations whose answer counts are pooled per prompt (repeated
            prompts): counts from the last W−1 iterations are added to the group's, so the
            effective K grows and the bias vanishes as W·(visits per iteration)·K → ∞ ("sequential
            zero-bias"; the pooled counts come from older policies, a lag bias that vanishes with
            the step size). W > 1 needs a closed-form table (plugin, loo_plugin, digamma).
        policy: ``"gru"`` (the π_ref GRU, trainable) or another sequence policy.
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`.

    Raises:
        ValueError: a non-answer game, an unknown utility/estimator/advantage, or pooling with
            a solved table.
    """

    supported_modes = ("sample",)
    supported_payoffs = ("answer_utility",)
    _extra_state = ("pool",)

    def __init__(self, env, seed: int = 0, mode: str = "sample", utility: str = "kl", estimator: str = "aqp",
                 group_size: int = 8, clip: float = 0.2, beta: float = 0.0, n_epochs: int = 4,
                 advantage: str = "grpo", pool_window: int = 1, policy: str = "gru", lr: float = 0.003,
                 batch_size: int = 16, device: str = "cpu"):
        check_choice("utility", utility, UTILITIES)
        check_choice("advantage", advantage, ADVANTAGES)
        group_size = check_int("group_size", group_size, low=2)  # counts need K rollouts
        clip = check_probability("clip", clip, low_open=True, high_open=True)
        beta = check_real("beta", beta, 0)  # 0 disables the k3 penalty
        n_epochs = check_int("n_epochs", n_epochs, low=1)
        pool_window = check_int("pool_window", pool_window, low=1)  # 1 = no pooling
        if pool_window > 1 and estimator not in _CLOSED_FORM:
            raise ValueError(f"pool_window > 1 needs a table at every effective K: estimator in {_CLOSED_FORM}, "
                             f"got {estimator!r} (or set pool_window=1)")
        super().__init__(env, seed, mode, policy, lr, batch_size, n_epochs, device)
        self.utility, self.estimator, self.group_size = utility, estimator, int(group_size)
        self.clip, self.beta, self.advantage = clip, beta, advantage
        self.pool_window = int(pool_window)
        self.g_log, self.g_poly = estimator_tables(utility, estimator, self.group_size)
        self.log_target = np.log(self.game.target)
        self.pool = np.zeros((self.pool_window - 1, self.game.n_contexts, self.game.n_answers))

    # ------------------------------------------------------------------ rewards
    def rewards(self, contexts: np.ndarray, answers: np.ndarray) -> np.ndarray:
        """Estimated rewards [n, K] of the groups ``answers`` [n, K] of ``contexts`` [n]."""
        if self.pool_window == 1:
            return group_rewards(answers, self.log_target[contexts], self.utility, self.g_log, self.g_poly)
        pooled = self.pool.sum(0)[contexts]  # [n, A] answer counts of the last W−1 iterations
        k = group_counts(answers) + np.take_along_axis(pooled, answers, axis=1).astype(np.int64)
        K_eff = self.group_size + pooled.sum(1).astype(np.int64)
        out = np.empty(answers.shape)
        for row, (Kr, kr) in enumerate(zip(K_eff, k)):
            g_log = _pooled_table(self.estimator, int(Kr)) if self.utility in ("kl", "entropy") else None
            poly = (kr - 1) / (Kr - 1)
            if self.utility == "kl":
                out[row] = self.log_target[contexts[row], answers[row]] - g_log[kr - 1]
            elif self.utility == "entropy":
                out[row] = -g_log[kr - 1]
            else:
                out[row] = 1.0 - poly if self.utility == "gini" else poly
        counts = np.zeros((self.game.n_contexts, self.game.n_answers))
        np.add.at(counts, (np.repeat(contexts, answers.shape[1]), answers.reshape(-1)), 1.0)
        self.pool = np.concatenate([counts[None], self.pool[:-1]])
        return out

    def answer_probs(self) -> np.ndarray:
        """The current answer marginal ν_π [X, A] (exact)."""
        return self.game.answer_marginal(self.policy_probs())

    # ------------------------------------------------------------------ one iteration
    def step(self):
        n, K = self.batch_size, self.group_size
        contexts = self.game.sample_contexts(n, self.rng)
        x = np.repeat(contexts, K)
        y = self.sample_responses(x)
        rewards = self.rewards(contexts, self.game.answers[y].reshape(n, K))
        r = self.tensor(rewards)
        if self.advantage == "grpo":
            advantages = group_advantages(r)
        else:
            advantages = r - r.mean(-1, keepdim=True) if self.advantage == "mean" else r
        loss = clipped_policy_update(self, x, y, advantages.reshape(-1), self.clip, self.beta)
        return {metrics.LOSS: loss, metrics.REWARD_MEAN: float(rewards.mean())}

    # ------------------------------------------------------------------ exact metrics
    def evaluate(self) -> dict[str, float]:
        """The game's metrics (``game/kl_to_ref``, sequence level) and the costs, plus the answer-level
        ones of this algorithm's utility: ``alft/objective`` (E_x F(ν_π)) and
        ``alft/kl_answer_to_target`` (E_x KL(ν*‖ν_π); for ``kl``: KL(ρ_target‖ν_π))."""
        pi = self.policy_probs()
        return {**super().evaluate(), metrics.ALFT_OBJECTIVE: self.game.objective(pi, self.utility),
                metrics.ALFT_KL_TO_TARGET: self.game.kl_answer_to_target(pi, self.utility)}
