"""WIND: win-rate dominance, the regularized win-rate game solved by a mirror-descent step.

Paper: Yang, Mei, Dai, Wen, Cen, Schuurmans, Chi, Dai (2025), "Faster WIND: Accelerating
Iterative Best-of-N Distillation for LLM Alignment", AISTATS, arXiv:2410.20727.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.special import log_softmax
from torch import nn
from torch.nn import functional as F

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_choice, check_real

from .base import Algorithm

LOSSES = ("sq", "kl", "nce")
OFFSETS = ("learned", "none")


def wind_step(log_pi: np.ndarray, log_ref: np.ndarray, win: np.ndarray, eta: float, beta: float) -> np.ndarray:
    """Exact WIND: log π_{t+1} = (1−ηβ) log π_t + ηβ log μ + η P(y≻π_t) − log Z (at ηβ = 1 the
    first term is absent, also where π_t = 0)."""
    logits = eta * beta * log_ref + eta * win
    keep = 1 - eta * beta
    return log_softmax(logits + keep * log_pi if keep else logits, axis=-1)


def check_omd_step(beta: float, eta: float) -> tuple[float, float]:
    """β > 0 and η > 0 with ηβ ≤ 1: the KL-regularized mirror-descent step of WIND, INPO and EGPO."""
    beta = check_real("beta", beta, 0, low_open=True)  # the regularized game
    eta = check_real("eta", eta, 0, low_open=True)
    if eta * beta > 1:
        raise ValueError(f"eta must be <= 1/beta = {1 / beta:g} (the step needs eta*beta <= 1), got eta={eta:g}")
    return beta, eta


def omd_log_ratio(log_new, log_old, log_ref, eta: float, beta: float):
    """h_θ(y) = log π_θ(y) − (1−ηβ) log π_t(y) − ηβ log μ(y): the step's log-ratio, equal to
    η·P(y≻π_opp) + const exactly when π_θ is :func:`wind_step` against π_opp."""
    return log_new - (1 - eta * beta) * log_old - eta * beta * log_ref


def wind_score(log_new, log_old, log_ref, offset, eta: float, beta: float):
    """s = h_θ(x,y)/η − c(x) (h_θ: :func:`omd_log_ratio`); its population optimum under every
    WIND loss is s = P(y ≻ π_t | x) − ½, i.e. the exact WIND step."""
    return omd_log_ratio(log_new, log_old, log_ref, eta, beta) / eta - offset


def safe_log(z, eps: float = 1e-3):
    """log z for z ≥ ε, continued below ε by its second-order Taylor expansion at ε: smooth,
    concave and finite everywhere, so an optimizer step past 0 is pulled back (a clamp would
    freeze it) while the minimizer is unchanged when it lies above ε."""
    zc = z.clamp_min(eps)
    d = (z - zc) / eps
    return zc.log() + d - 0.5 * d**2


def regression_loss(score, label, loss: str, weight=None):
    """``sq``: (s − (b − ½))²; ``kl``: Bernoulli cross-entropy of b against q = ½ + s (a linear
    link, so that the minimizer stays q = E[b|y] = P(y≻π_t); logs via :func:`safe_log`)."""
    if loss == "sq":
        per = (score - (label - 0.5)) ** 2
    else:
        per = -(label * safe_log(0.5 + score) + (1 - label) * safe_log(0.5 - score))
    return per.mean() if weight is None else (weight * per).sum()


def nce_loss(score_winner, score_noise, weight_winner=None, weight_noise=None):
    """Noise-contrastive estimation: winners of duels (density 2π_t(y)P(y≻π_t)) against the
    π_t-distributed duel participants (ν = 2 noise samples per winner). The model density ratio
    is 1 + 2s, so the classifier logit is log(1 + 2s) − log 2 and the NCE optimum is
    1 + 2s = 2P(y≻π_t), i.e. s = P(y≻π_t) − ½: the same minimizer as ``sq``."""
    def logit(s):
        return safe_log(1 + 2 * s) - np.log(2.0)

    pos, neg = F.logsigmoid(logit(score_winner)), F.logsigmoid(-logit(score_noise))
    if weight_winner is None:
        return -(pos.sum() + neg.sum()) / len(score_winner)
    return -((weight_winner * pos).sum() + (weight_noise * neg).sum())


def context_offset(algo: Algorithm, learned: bool = True) -> nn.Embedding:
    """The per-context offset c(x) of the regression losses (it absorbs the log-partition), zero at
    the start and trained with the policy when ``learned``."""
    offset = nn.Embedding(algo.game.n_contexts, 1).to(algo.device)
    nn.init.zeros_(offset.weight)
    offset.requires_grad_(learned)
    if algo.optimizer is not None and learned:
        algo.optimizer.add_param_group({"params": offset.parameters()})
    return offset


class WIND(Algorithm):
    """WIND (win-rate dominance) for max_π min_π' P(π≻π') − βKL(π‖μ) + βKL(π'‖μ), μ = π_ref.

    Paper: Yang et al. (2025), Faster WIND, arXiv:2410.20727.

    Exact mode: π_{t+1} ∝ π_t^{1−ηβ} · μ^{ηβ} · exp(η·P(y≻π_t)); its fixed point is the
    regularized equilibrium π*_β (``game.nash(beta)``), reached at a linear rate when η = O(β).

    Sample mode: per prompt x draw y, y' ~ π_t and make **one** comparison b = 1{y ≻ y'}; by
    antisymmetry (y, b) and (y', 1−b) are both labelled. With s = h_θ(x,y) − c(x) (see
    :func:`wind_score`, c a learned per-context offset that absorbs log Z), minimize
    ``sq`` (s − (b−½))², ``kl`` (cross-entropy with q = ½ + s) or ``nce`` (winners vs duel
    participants, :func:`nce_loss`). All three have the exact WIND step as population minimizer.
    ``offset="none"`` fixes c ≡ 0 (SPPO's log Z ≈ η/2 approximation; biased).

    Args:
        beta: KL regularization β > 0 of the game.
        eta: step size η, 0 < ηβ ≤ 1. Linear last-iterate convergence needs η = O(β) when β is
            small (measured: ``zoo_configs/wind.yml``). Sample mode prefers smaller η (the label
            noise is scaled by η).
        loss: sample-mode loss, ``"sq"``, ``"kl"`` or ``"nce"``.
        offset: ``"learned"`` (per-context c) or ``"none"`` (c ≡ 0).
        eta_decay: use η_t = min(η, 2/(β(t+1))) at iteration t (Robbins–Monro). With a constant
            η the sample iterate keeps a noise floor of variance ≈ η·σ²/(2β) (σ² the label noise
            per response); the decay removes it while keeping the fixed point π*_β. Default
            (None): on in sample mode, off in exact mode (where it would only slow convergence).
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`.
    """

    _extra_state = ("offset",)

    def __init__(self, env, seed: int = 0, mode: str = "exact", beta: float = 0.1, eta: float = 1.0,
                 loss: str = "sq", offset: str = "learned", eta_decay: bool | None = None,
                 policy: str = "tabular", lr: float = 0.05,
                 batch_size: int = 256, grad_steps: int = 20, device: str = "cpu"):
        beta, eta = check_omd_step(beta, eta)
        check_choice("loss", loss, LOSSES)
        check_choice("offset", offset, OFFSETS)
        if eta_decay is not None and not isinstance(eta_decay, (bool, np.bool_)):
            raise TypeError(f"eta_decay must be True, False or None, got {eta_decay!r}")
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        self.beta, self.eta, self.loss = beta, eta, loss
        self.eta_decay = mode == "sample" if eta_decay is None else eta_decay
        self.offset = context_offset(self, learned=offset == "learned")

    def target_policy(self):
        return self.game.nash(self.beta)

    def regularization(self) -> float:
        return self.beta

    def step_size(self) -> float:
        """η_t for the coming iteration."""
        return min(self.eta, 2 / (self.beta * (self.iteration + 1))) if self.eta_decay else self.eta

    def step(self):
        eta = self.step_size()
        if self.mode == "exact":
            with np.errstate(divide="ignore"):  # π_t may hold exact zeros (ηβ = 1 steps): log 0 = −∞
                log_pi = np.log(self.pi)
            self.pi = np.exp(wind_step(log_pi, self.log_ref, self.game.win_rates(self.pi), eta, self.beta))
            return {metrics.ETA: eta}
        x, y, y2 = self.sample_pairs()
        b = self.compare(x, y, y2)
        xs, ys = self.duel_tensors(x, y, y2)
        label = self.tensor(np.concatenate([b, 1 - b]))
        log_old, log_ref = self.frozen_log_probs(xs, ys)

        def loss_fn():
            score = wind_score(self.policy.log_prob(xs, ys), log_old, log_ref, self.offset(xs)[:, 0], eta, self.beta)
            if self.loss != "nce":
                return regression_loss(score, label, self.loss)
            n = len(x)
            pair = torch.arange(n, device=label.device)
            winner = torch.where(label[:n] > 0.5, pair, pair + n)
            return nce_loss(score[winner], score)

        return {metrics.LOSS: self.fit(loss_fn), metrics.ETA: eta}
