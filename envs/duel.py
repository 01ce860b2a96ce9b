"""Dueling-bandit quantities of a preference matrix: winners and the regret of compared pairs.

Pure functions of ``P`` [..., Y, Y] (P(y ≻ y') with P + Pᵀ = 1), no learning code. Definitions
(Yue, Broder, Kleinberg, Joachims 2012, "The K-armed dueling bandits problem"; Zoghi, Whiteson,
Munos, de Rijke 2014, RUCB, arXiv:1312.3393; Wu & Liu 2016, Double Thompson Sampling,
arXiv:1604.07101):

- **Condorcet winner**: the response y with P(y ≻ y') > ½ for every y' ≠ y (at most one; it
  need not exist on intransitive games).
- **Copeland score**: the number of responses y beats, #{y' ≠ y : P(y ≻ y') > ½}; the Copeland
  winner maximizes it (the Condorcet winner when one exists; ties go to the lowest index).
- **Borda score**: the mean win rate against the others, (1/(Y−1))·Σ_{y'≠y} P(y ≻ y'); the Borda
  winner maximizes it (ties to the lowest index).
- **Regret of a compared pair** (y, y'), relative to the reference response b* (the Condorcet
  winner, else the Copeland winner) with gap ε(y) = P(b* ≻ y) − ½: strong regret
  (ε(y) + ε(y'))/2 (the average of the two, as in RUCB and Double TS), weak regret
  min(ε(y), ε(y')). Both are ≥ 0 when b* is a Condorcet winner; against a Copeland winner a
  response that beats b* has a negative gap.
"""

from __future__ import annotations

import numpy as np

NO_WINNER = -1  # condorcet_winner's value for a context without one


def copeland_scores(P: np.ndarray) -> np.ndarray:
    """#{y' ≠ y : P(y ≻ y') > ½} per response, [..., Y] (the diagonal ½ never counts)."""
    return (np.asarray(P) > 0.5).sum(axis=-1)


def borda_scores(P: np.ndarray) -> np.ndarray:
    """Mean win rate against the other responses, (Σ_{y'≠y} P(y ≻ y'))/(Y − 1), [..., Y]."""
    P = np.asarray(P, dtype=np.float64)
    n = P.shape[-1]
    return (P.sum(axis=-1) - np.diagonal(P, axis1=-2, axis2=-1)) / (n - 1)


def condorcet_winner(P: np.ndarray) -> np.ndarray:
    """The Condorcet winner per context, [...] (``NO_WINNER`` = −1 where there is none)."""
    scores = copeland_scores(P)
    best = scores.argmax(axis=-1)
    has = np.take_along_axis(scores, best[..., None], -1)[..., 0] == P.shape[-1] - 1
    return np.where(has, best, NO_WINNER)


def copeland_winner(P: np.ndarray) -> np.ndarray:
    """argmax of the Copeland score per context (lowest index among ties), [...]."""
    return copeland_scores(P).argmax(axis=-1)


def borda_winner(P: np.ndarray) -> np.ndarray:
    """argmax of the Borda score per context (lowest index among ties), [...]."""
    return borda_scores(P).argmax(axis=-1)


def reference_winner(P: np.ndarray) -> np.ndarray:
    """b* per context: the Condorcet winner, else the Copeland winner, [...]."""
    condorcet = condorcet_winner(P)
    return np.where(condorcet != NO_WINNER, condorcet, copeland_winner(P))


def regret_gaps(P: np.ndarray) -> np.ndarray:
    """ε(y) = P(b* ≻ y) − ½ per context and response, [..., Y] (b* = :func:`reference_winner`)."""
    P = np.asarray(P, dtype=np.float64)
    best = reference_winner(P)
    return np.take_along_axis(P, best[..., None, None], axis=-2)[..., 0, :] - 0.5


def pair_regrets(gaps: np.ndarray, x, y, y2) -> tuple[np.ndarray, np.ndarray]:
    """(weak, strong) regret of each compared pair (x, y, y2) from ``gaps`` = :func:`regret_gaps`
    [X, Y]: min(ε(y), ε(y2)) and (ε(y) + ε(y2))/2. Index arrays broadcast."""
    a, b = gaps[x, y], gaps[x, y2]
    return np.minimum(a, b), 0.5 * (a + b)


class QueriedRegret:
    """Running sums of the weak and strong regret of the pairs an algorithm compared.

    ``add(P, x, y, y2)`` computes the gaps of ``P`` [X, Y, Y] on its first call (the game is
    fixed) and adds one term per (broadcast) pair; ``averages()`` gives (weak, strong) per pair.
    ``state()``/``load(state)`` round-trip the sums as plain floats (checkpoints).
    """

    def __init__(self):
        self.pairs = self.weak = self.strong = 0.0
        self._gaps: np.ndarray | None = None

    def add(self, P: np.ndarray, x, y, y2) -> None:
        if self._gaps is None:
            self._gaps = regret_gaps(P)
        weak, strong = pair_regrets(self._gaps, *np.broadcast_arrays(x, y, y2))
        self.pairs += weak.size
        self.weak += float(weak.sum())
        self.strong += float(strong.sum())

    def averages(self) -> tuple[float, float]:
        """(mean weak regret, mean strong regret) per compared pair (NaN before the first pair)."""
        if not self.pairs:
            return float("nan"), float("nan")
        return self.weak / self.pairs, self.strong / self.pairs

    def state(self) -> dict[str, float]:
        return {"pairs": self.pairs, "weak": self.weak, "strong": self.strong}

    def load(self, state: dict[str, float]) -> None:
        self.pairs, self.weak, self.strong = (float(state[k]) for k in ("pairs", "weak", "strong"))
