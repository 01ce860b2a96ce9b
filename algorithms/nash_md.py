"""Nash mirror descent (Nash-MD) and Nash mirror prox (Nash-MP) for the β-regularized preference
game max_π min_π' P(π≻π') − βKL(π‖μ) + βKL(π'‖μ), μ = π_ref, whose unique equilibrium is
π*_β ∝ μ·exp(P(y≻π*_β)/β) (``game.nash(beta)``). Nash-MD plays a mirror step against the
geometric mixture of the current policy and μ; Nash-MP takes two proximal steps anchored at the
current policy (extragradient). Two classes, :class:`NashMD` and :class:`NashMP`, share their
setup (:class:`_RegularizedNash`); the closed-form steps are pure helpers here, and the sample-mode
losses reuse WIND's score/regression helpers.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_softmax

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_choice, check_real
from prefzoo.envs.oracle import sample_table_rows

from .base import Algorithm
from .wind import context_offset, regression_loss, wind_score

MIXTURES = ("sequence", "token")


def md_tau(eta: float, beta: float) -> float:
    """Munos et al.'s mixture regularization τ = β/(1+ηβ): the value that makes the mixture
    π^μ's fixed point exactly π*_β (with the paper's τ = β it is π*_{β/(1−ηβ)} instead)."""
    return beta / (1 + eta * beta)


def mixture_log_probs(log_pi, log_ref, eta: float, tau: float):
    """log π^μ with π^μ ∝ π^{1−ητ}·μ^{ητ} (numpy or torch, normalized over the last axis)."""
    logits = (1 - eta * tau) * log_pi + eta * tau * log_ref
    if isinstance(logits, torch.Tensor):
        return torch.log_softmax(logits, dim=-1)
    return log_softmax(logits, axis=-1)


def nash_md_step(log_pi, log_ref, P, eta: float, tau: float) -> np.ndarray:
    """Exact Nash-MD: log π_{t+1} = log π^μ_t + η P(y≻π^μ_t) − log Z (P: [X, Y, Y])."""
    log_mix = mixture_log_probs(log_pi, log_ref, eta, tau)
    return log_softmax(log_mix + eta * np.einsum("xij,xj->xi", P, np.exp(log_mix)), axis=-1)


def prox_step(log_anchor, log_ref, win, eta: float, beta: float) -> np.ndarray:
    """One regularized prox step anchored at π_k against an opponent with win rates ``win``:
    log π = (log π_k + ηβ log μ + η P(y≻π_opp))/(1+ηβ) − log Z."""
    return log_softmax((log_anchor + eta * beta * log_ref + eta * win) / (1 + eta * beta), axis=-1)


def prox_score(log_new, log_anchor, log_ref, offset, eta: float, beta: float):
    """s = [(1+ηβ) log π_θ − log π_k − ηβ log μ]/η − c(x); the square loss onto b − ½ with
    E[b|y] = P(y≻π_opp) has :func:`prox_step` as population minimizer (c absorbs log Z)."""
    return ((1 + eta * beta) * log_new - log_anchor - eta * beta * log_ref) / eta - offset


class _RegularizedNash(Algorithm):
    """What Nash-MD and Nash-MP share: β, η, the target π*_β and the learned per-context offset c(x)
    of their sample-mode regressions (:func:`~prefzoo.algorithms.wind.context_offset`)."""

    _extra_state = ("offset",)

    def __init__(self, env, seed: int, mode: str, beta: float, eta: float, policy: str, lr: float,
                 batch_size: int, grad_steps: int, device: str):
        beta = check_real("beta", beta, 0, low_open=True)  # the regularized game
        eta = check_real("eta", eta, 0, low_open=True)
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        self.beta, self.eta = beta, eta
        self.offset = context_offset(self)

    def target_policy(self):
        return self.game.nash(self.beta)

    def regularization(self) -> float:
        return self.beta

    def _regress(self, xs, ys, label, score_fn) -> float:
        """Fit π_θ (and c) by the square loss of ``score_fn(log π_θ(y), c(x))`` onto b − ½."""
        xs, ys, label = self.tensor(xs, torch.long), self.tensor(ys, torch.long), self.tensor(label)
        return self.fit(lambda: regression_loss(score_fn(self.policy.log_prob(xs, ys), self.offset(xs)[:, 0]),
                                                label, "sq"))


class NashMD(_RegularizedNash):
    """Nash-MD for the β-regularized game.

    Paper: Munos, Valko, Calandriello, Azar, Rowland, Guo, Tang, Geist, Mesnard, Michi,
    Selvi, Girgin, Momchev, Bachem, Mankowitz, Precup, Piot (2023), "Nash Learning from Human
    Feedback", arXiv:2312.00886.

    Nash-MD, exact: π^μ_t ∝ π_t^{1−ητ}·μ^{ητ};  π_{t+1} ∝ π^μ_t·exp(η·P(y≻π^μ_t)).
    Parametrization: τ = β/(1+ηβ) (:func:`md_tau`). At a fixed point the mixture m satisfies
    m ∝ μ·exp((1−ητ)/τ·P(y≻m)) = μ·exp(P(y≻m)/β), i.e. m = π*_β exactly, while the raw iterate
    π_t tends to μ·exp(P(y≻π*_β)/τ), the τ-regularized best response to π*_β (it overshoots by
    the factor 1+ηβ in the exponent), so **the policy of record is the mixture** π^μ_t
    (``policy_probs``): the policy Nash-MD plays and the one that converges. (With the paper's
    τ = β the mixture's limit is π*_{β/(1−ηβ)}, the O(η) bias of its theorem.) The mixture
    sequence is exactly WIND with step η/(1+ηβ) and the same β.
    Nash-MD, sample: per prompt y ~ π_t and y' ~ π^μ_t (``mixture``), one comparison
    b = 1{y≻y'} with E[b|y] = P(y≻π^μ_t). Minimize (s − (b−½))² with
    s = [log π_θ(y) − log π^μ_t(y)]/η − c(x) (WIND's :func:`wind_score` with β → τ, learned
    per-context offset c); the population minimizer (weights π_t(y)) is the exact step.

    Args:
        beta: KL regularization β > 0 of the game; the target is π*_β = ``game.nash(beta)``.
        eta: step size η > 0 (ητ = ηβ/(1+ηβ) < 1 for every η). The mixture is WIND with step
            η/(1+ηβ), so last-iterate convergence needs η = O(β) when β is small (measured:
            ``zoo_configs/nash_md.yml``). In sample mode the regression noise scales with η.
        mixture: how sample mode draws the opponent y' ~ π^μ_t.
            ``"sequence"`` (default): from the exact sequence-level mixture ∝ π_t^{1−ητ}·μ^{ητ},
            enumerated over every response (``policy_probs``), so the population minimizer is
            the exact step. ``"token"``: token by token from softmax((1−ητ)·logit_π + ητ·logit_μ)
            (the sequence policy's ``sample_mixture``; needs ``policy="gru"`` or ``"gru_bf16"``),
            Nash-MD's practical form for LMs, which enumerates nothing (the option on a
            :class:`~prefzoo.envs.token.TokenOracle`). It is not the sequence-level mixture:
            each token is normalized on its own, so it is π(y)^{1−ητ}·μ(y)^{ητ}/Π_t Z_t(y_<t)
            with Z_t = Σ_v π(v|y_<t)^{1−ητ}·μ(v|y_<t)^{ητ} ≤ 1 (= 1 where the two next-token laws
            agree): it up-weights sequences through prefixes where π_t and μ disagree. The
            opponent is then not π^μ_t, so the iteration's fixed point is in general not exactly
            π*_β; the logged metrics remain those of the sequence-level mixture of π_θ (on a game
            whose responses are not listed, ``prefzoo/AnswerTokenGame-v0`` with ``policy="gru"``:
            those of the token-level mixture, estimated).
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`; ``grad_steps`` Adam steps
            per regression.
    """

    reads_every_response = True  # with the default mixture="sequence"; each instance sets its own

    def __init__(self, env, seed: int = 0, mode: str = "exact", beta: float = 0.1, eta: float = 1.0,
                 mixture: str = "sequence", policy: str = "tabular", lr: float = 0.05, batch_size: int = 256,
                 grad_steps: int = 20, device: str = "cpu"):
        check_choice("mixture", mixture, MIXTURES)
        self.reads_every_response = mixture == "sequence"
        super().__init__(env, seed, mode, beta, eta, policy, lr, batch_size, grad_steps, device)
        if mixture == "token" and not hasattr(self.policy, "sample_mixture"):
            raise ValueError(f"mixture='token' samples Nash-MD's opponent token by token from the policy's and "
                             f"π_ref's next-token logits: it needs sample mode with a sequence policy that has a "
                             f"π_ref model (policy='gru' or 'gru_bf16' on a TokenGame, 'hf' on an LM game), got "
                             f"mode={mode!r}, policy={policy!r}")
        self.mixture, self.tau = mixture, md_tau(eta, beta)

    def policy_probs(self):
        with np.errstate(divide="ignore"):
            return np.exp(mixture_log_probs(np.log(super().policy_probs()), self.log_ref, self.eta, self.tau))

    def evaluation_policy(self):
        """The mixture is the policy of record; where the responses are not listed (a game exact at
        any size) it is the token-level mixture that sample mode plays, ``policy.game_view(ητ)``."""
        if self.mixture == "token" and not self.game.listed:
            return self.policy.game_view(self.eta * self.tau)
        return super().evaluation_policy()

    def step(self):
        eta = self.eta
        if self.mode == "exact":
            self.pi = np.exp(nash_md_step(np.log(self.pi), self.log_ref, self.game.P, eta, self.tau))
            return {}
        x, y = self.sample_batch(self.batch_size)
        xs, ys = self.tensor(x, torch.long), self.tensor(y, torch.long)
        log_old, log_ref = self.frozen_log_probs(xs, ys)
        y_mix = (self.policy.sample_mixture(x, self.rng, eta * self.tau) if self.mixture == "token"
                 else sample_table_rows(self.policy_probs(), x, self.rng))
        self.samples += len(x)
        b = self.compare(x, y, y_mix)
        loss = self._regress(x, y, b, lambda lp, c: wind_score(lp, log_old, log_ref, c, eta, self.tau))
        return {metrics.LOSS: loss}


class NashMP(_RegularizedNash):
    """Nash-MP (Nash mirror prox) for the β-regularized game.

    Paper: "Nash Mirror Prox" (2025), arXiv:2505.19731 (the game and Nash-MD: :class:`NashMD`).

    Nash-MP, exact: two prox steps anchored at π_k (:func:`prox_step`),
    π_{k+½} ∝ exp((log π_k + ηβ log μ + η P(y≻π_k))/(1+ηβ)),
    π_{k+1} ∝ exp((log π_k + ηβ log μ + η P(y≻π_{k+½}))/(1+ηβ)); its fixed point is π*_β with
    τ = β directly, and ``policy_probs`` is π_k.
    Nash-MP, sample: step ½ draws y, y' ~ π_k, one comparison labels (y, b) and (y', 1−b);
    step 1 draws y'' ~ π_{k+½} and compares it with y (2 comparisons per prompt per
    iteration). Each step minimizes (s − (b−½))² with s = :func:`prox_score` (anchor π_k), whose
    population minimizer is the corresponding exact prox step.

    Args:
        beta: KL regularization β > 0 of the game; the target is π*_β = ``game.nash(beta)``.
        eta: step size η > 0. A large η can keep the last iterate cycling when β is small; the
            extragradient tolerates larger steps than Nash-MD (measured:
            ``zoo_configs/nash_mp.yml``). In sample mode the regression noise scales with η.
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`; ``grad_steps`` Adam steps
            per regression (two regressions per iteration).
    """

    def __init__(self, env, seed: int = 0, mode: str = "exact", beta: float = 0.1, eta: float = 1.0,
                 policy: str = "tabular", lr: float = 0.05, batch_size: int = 256, grad_steps: int = 20,
                 device: str = "cpu"):
        super().__init__(env, seed, mode, beta, eta, policy, lr, batch_size, grad_steps, device)

    def step(self):
        eta, beta = self.eta, self.beta
        if self.mode == "exact":
            log_pi = np.log(self.pi)
            half = np.exp(prox_step(log_pi, self.log_ref, self.game.win_rates(self.pi), eta, beta))
            self.pi = np.exp(prox_step(log_pi, self.log_ref, self.game.win_rates(half), eta, beta))
            return {}
        x, y = self.sample_batch(self.batch_size)
        y2 = self.sample_responses(x)  # step ½: both duel sides come from π_k
        b = self.compare(x, y, y2)
        xx, yy = np.concatenate([x, x]), np.concatenate([y, y2])
        log_anchor, log_ref = self.frozen_log_probs(self.tensor(xx, torch.long), self.tensor(yy, torch.long))
        self._regress(xx, yy, np.concatenate([b, 1 - b]),
                      lambda lp, c: prox_score(lp, log_anchor, log_ref, c, eta, beta))
        y_half = self.sample_responses(x)  # step 1: y ~ π_k against y'' ~ π_{k+½}
        b = self.compare(x, y, y_half)
        n = len(x)
        loss = self._regress(x, y, b, lambda lp, c: prox_score(lp, log_anchor[:n], log_ref[:n], c, eta, beta))
        return {metrics.LOSS: loss}
