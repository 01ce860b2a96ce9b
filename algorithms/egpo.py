"""EGPO: extragradient preference optimization, INPO's mirror-descent step taken twice per
iteration (a look-ahead step, then the real step from the same anchor against the look-ahead).

Paper: Zhou, Fazel, Du (2025), "Extragradient Preference Optimization (EGPO): Beyond
Last-Iterate Convergence for Nash Learning from Human Feedback", COLM, arXiv:2503.08942.
"""

from __future__ import annotations

from prefzoo.envs import metrics

from .inpo import INPO


class EGPO(INPO):
    """EGPO for the β-regularized preference game (the target is π*_β = ``game.nash(beta)``).

    Paper: Zhou, Fazel, Du (2025), EGPO, COLM, arXiv:2503.08942.

    Exact mode (their extragradient update in the tabular softmax form):
    π_{t+½} ∝ π_t^{1−ηβ} μ^{ηβ} exp(η·P(y≻π_t)),  π_{t+1} ∝ π_t^{1−ηβ} μ^{ηβ} exp(η·P(y≻π_{t+½})).
    Claim: last-iterate linear convergence to π*_β, also with noisy preferences.
    Sample mode: per prompt y, y' ~ π_t. Step ½: one comparison b = 1{y≻y'} and INPO's pair loss
    (h(y) − h(y') − η(b − ½))² (:func:`~prefzoo.algorithms.inpo.pair_loss`) give π_{t+½}. Step 1:
    z ~ π_{t+½}, two comparisons (y vs z, y' vs z) and the same loss, anchored at π_t, with target
    η(b_yz − b_y'z), whose population minimizer is the exact step against π_{t+½}. Three comparisons
    per prompt per iteration. (The paper's LM experiments use online-IPO-style losses on pairs; this
    is that loss written for the mirror-descent step, so both steps share INPO's code.)

    Args: as :class:`~prefzoo.algorithms.inpo.INPO`.
    """

    def step(self):
        if self.mode == "exact":
            self.pi = self.omd_step(self.omd_step(self.pi))
            return {}
        x, y, y2 = self.sample_pairs()
        xs, ys = self.duel_tensors(x, y, y2)
        anchor = self.frozen_log_probs(xs, ys)  # π_t's, for both steps
        b = self.compare(x, y, y2)
        self.fit_pairs(xs, ys, self.eta * (b - 0.5), anchor)  # π_θ = π_{t+½}
        z = self.sample_responses(x)
        target = self.eta * (self.compare(x, y, z) - self.compare(x, y2, z))
        return {metrics.LOSS: self.fit_pairs(xs, ys, target, anchor)}
