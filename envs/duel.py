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
- **Condorcet regret of a compared pair** (y, y'), on a context with a Condorcet winner b*, with
  gap ε(y) = P(b* ≻ y) − ½ ≥ 0: the *average* regret (ε(y) + ε(y'))/2 (RUCB's r_t, duelpy's
  ``AverageRegret``; Yue et al.'s strong regret is the sum, duelpy's ``StrongRegret`` the max)
  and the weak regret min(ε(y), ε(y')). Undefined where there is no Condorcet winner (every
  context of PrefBandit-Cyclic at |Y| = 6 and 16): against another reference, a response that
  beats it would have a negative gap.
- **Copeland regret** of a pair, on every context (Zoghi, Karnin, Whiteson, de Rijke 2015,
  "Copeland dueling bandits"; Wu & Liu 2016): with the normalized Copeland score
  cpld(y) = Copeland(y)/(Y − 1), cpld(b_C) − (cpld(y) + cpld(y'))/2 ≥ 0, b_C a Copeland winner.
  Where a Condorcet winner exists it is the Copeland winner (cpld = 1).
"""

from __future__ import annotations

import numpy as np

from . import metrics

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


def copeland_gaps(P: np.ndarray) -> np.ndarray:
    """cpld(b_C) − cpld(y) per context and response, [..., Y], cpld = Copeland score/(Y − 1)."""
    cpld = copeland_scores(P) / (np.shape(P)[-1] - 1)
    return cpld.max(axis=-1, keepdims=True) - cpld


class QueriedRegret:
    """Running sums of the regrets of the pairs an algorithm compared (module docstring).

    ``add(P, x, y, y2)`` computes the gaps of ``P`` [X, Y, Y] on its first call (the game is
    fixed) and adds one term per (broadcast) pair: the Copeland regret always, the weak and average
    (Condorcet) regrets on contexts with a Condorcet winner. ``averages()`` gives the means per
    pair; ``state()``/``load(state)`` round-trip the sums as plain floats (checkpoints).
    """

    KEYS = ("pairs", "condorcet_pairs", "weak", "average", "copeland")

    def __init__(self):
        self.pairs = self.condorcet_pairs = self.weak = self.average = self.copeland = 0.0
        self._gaps: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def add(self, P: np.ndarray, x, y, y2) -> None:
        if self._gaps is None:
            self._gaps = (regret_gaps(P), condorcet_winner(P) != NO_WINNER, copeland_gaps(P))
        condorcet, has_winner, copeland = self._gaps
        x, y, y2 = np.broadcast_arrays(x, y, y2)
        self.pairs += x.size
        self.copeland += float((copeland[x, y] + copeland[x, y2]).sum()) / 2
        mask = has_winner[x]
        a, b = condorcet[x, y][mask], condorcet[x, y2][mask]
        self.condorcet_pairs += a.size
        self.weak += float(np.minimum(a, b).sum())
        self.average += float((a + b).sum()) / 2

    def averages(self) -> dict[str, float]:
        """Mean regrets per pair, by metric name: the Copeland regret over every pair; the weak and
        average regrets over the pairs of contexts with a Condorcet winner (absent when there were none)."""
        out = {metrics.DUEL_COPELAND_REGRET: self.copeland / self.pairs} if self.pairs else {}
        if self.condorcet_pairs:
            out.update({metrics.DUEL_WEAK_REGRET: self.weak / self.condorcet_pairs,
                        metrics.DUEL_AVERAGE_REGRET: self.average / self.condorcet_pairs})
        return out

    def state(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in self.KEYS}

    def load(self, state: dict[str, float]) -> None:
        for key in self.KEYS:
            setattr(self, key, float(state[key]))
