"""MPO: magnetic preference optimization, magnetic mirror descent on the preference game whose
magnet (the policy the KL term pulls toward) is reset to the current policy every
``magnet_every`` iterations, so that the iterates approach the equilibrium of the original,
unregularized game.

Paper: Wang, Ma, Chen, Zheng, Xue, Liu, Yang, Sun, Zhang, Ma, Yang (2024), "Magnetic Preference
Optimization: Achieving Last-iterate Convergence for Language Model Alignment", arXiv:2410.16714.
"""

from __future__ import annotations

import numpy as np
import torch

from prefzoo.envs import metrics
from prefzoo.envs.checks import check_int, check_real

from .base import Algorithm
from .nash_md import prox_score, prox_step
from .wind import context_offset, regression_loss


class MPO(Algorithm):
    """MPO for the unregularized game max_π min_π' P(π≻π'), by a sequence of regularized games.

    Paper: Wang et al. (2024), MPO, arXiv:2410.16714.

    Exact mode: magnetic mirror descent toward the magnet ρ_k,
    π_{t+1} ∝ exp((log π_t + ηβ log ρ_k + η·P(y≻π_t))/(1+ηβ))
    (:func:`~prefzoo.algorithms.nash_md.prox_step` anchored at π_t against π_t), whose last
    iterate converges linearly to the equilibrium of the game regularized toward ρ_k; every
    ``magnet_every`` iterations ρ_{k+1} = π_t (ρ_0 = μ = π_ref). Claim: the magnets' sequence is
    a proximal-point iteration, so the last iterate reaches the equilibrium of the original game
    (the paper's main theorem); MPO is judged by the unregularized exploitability.
    Sample mode: per prompt y, y' ~ π_t and one comparison b = 1{y≻y'}, labelling (y, b) and
    (y', 1−b); minimize (s − (b − ½))² with s = [(1+ηβ) log π_θ − log π_t − ηβ log ρ_k]/η − c(x)
    (:func:`~prefzoo.algorithms.nash_md.prox_score`, c a learned per-context offset), whose
    population minimizer is the exact step. The magnet is a frozen copy of the policy. (The paper
    trains each LM magnet phase on fresh self-play data with a preference model; the per-prompt
    offset here stands for its log-partition.)

    Args:
        beta: β > 0, the weight of the KL to the magnet (the proximal-point step is 1/β: a
            smaller β moves the magnets faster, but each magnet phase then converges more slowly).
        eta: step size η > 0 of the mirror step.
        magnet_every: iterations per magnet phase (≥ 1); enough for the phase to approach its
            regularized equilibrium (its rate is 1/(1+ηβ) per iteration).
        (others): see :class:`~prefzoo.algorithms.base.Algorithm`.
    """

    _extra_state = ("offset", "magnet")

    def __init__(self, env, seed: int = 0, mode: str = "exact", beta: float = 0.1, eta: float = 1.0,
                 magnet_every: int = 50, policy: str = "tabular", lr: float = 0.05, batch_size: int = 256,
                 grad_steps: int = 20, device: str = "cpu"):
        beta = check_real("beta", beta, 0, low_open=True)
        eta = check_real("eta", eta, 0, low_open=True)
        magnet_every = check_int("magnet_every", magnet_every, low=1)
        super().__init__(env, seed, mode, policy, lr, batch_size, grad_steps, device)
        self.beta, self.eta, self.magnet_every = beta, eta, int(magnet_every)
        self.offset = context_offset(self)
        # ρ_0 = π_ref: log μ [X, Y] in exact mode, a frozen copy of the initial policy (= π_ref) in sample mode
        self.magnet = self.log_ref.copy() if mode == "exact" else self.snapshot()

    def step(self):
        eta, beta = self.eta, self.beta
        diagnostics = {}
        if self.mode == "exact":
            with np.errstate(divide="ignore"):
                log_pi = np.log(self.pi)
            self.pi = np.exp(prox_step(log_pi, self.magnet, self.game.win_rates(self.pi), eta, beta))
        else:
            x, y, y2 = self.sample_pairs()
            b = self.compare(x, y, y2)
            xs, ys = self.duel_tensors(x, y, y2)
            label = self.tensor(np.concatenate([b, 1 - b]))
            with torch.no_grad():
                log_old, log_magnet = self.policy.log_prob(xs, ys), self.magnet.log_prob(xs, ys)

            def loss_fn():
                score = prox_score(self.policy.log_prob(xs, ys), log_old, log_magnet, self.offset(xs)[:, 0], eta, beta)
                return regression_loss(score, label, "sq")

            diagnostics[metrics.LOSS] = self.fit(loss_fn)
        if (self.iteration + 1) % self.magnet_every == 0:  # ρ_{k+1} = π_{t+1}
            with np.errstate(divide="ignore"):
                self.magnet = np.log(self.pi) if self.mode == "exact" else self.snapshot()
        return diagnostics
