"""Preferences over text: a score function (VADER) or a pairwise judge, cached and counted.

A text oracle maps batches of (prompt, response a, response b) strings to P(a ≻ b | prompt); a
game that plays over text (:class:`~prefzoo.envs.lm.game.LMGame`) decodes its response handles,
asks one of these, and draws the counted Bernoulli outcome itself (``game.compare``), exactly as
the exact games do. Every oracle caches its paid evaluations (a score per (prompt, response), a
judgement per (prompt, a, b)) and counts them (``calls``; ``cache_hits``: answers from the
cache, free). A batch's new evaluations are paid through :attr:`TextOracle.charge`, which the game
holding the oracle binds to its budget (``game.spend``: :class:`~prefzoo.envs.oracle.BudgetExhausted`
before anything of the batch is asked); a standalone oracle only counts. The counters and the cache
are plain data (:meth:`TextOracle.state`), part of a run's checkpoint.

- :class:`ScoreOracle`: a score function, text → score (or batched, texts → scores),
  Bradley–Terry P = σ((s_a − s_b)/T); :func:`vader_oracle` is the shipped, offline one (VADER's
  compound sentiment), and :class:`~prefzoo.envs.lm.hf.RewardModelOracle` a Hugging Face reward model.
- :class:`PairwiseJudgeOracle`: any callable (prompt, a, b) → P(a ≻ b) or a winner.
- :class:`RewardFunctionOracle`: reward functions called as TRL's ``GRPOTrainer`` calls them,
  ``f(prompts=[...], completions=[...], **columns) -> list[float]``, weighted and summed, with
  Bradley–Terry preferences on the sum.

A prompt may come with its data row (``rows``: ``{"prompt": ..., **columns}``, the prompt as in
the data, text or chat messages); the judge and the reward functions receive the row's other
columns as keyword arguments, and those columns are part of their cache keys.

Nothing here needs transformers.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from scipy.special import expit

from .checks import check_int, check_real

WINNERS = {"a": 1.0, "b": 0.0, "tie": 0.5}
JUDGE_SIGNATURE = "a callable (prompt, a, b) -> P(a > b) in [0, 1] or a winner ('a', 'b', 'tie')"
REWARD_SIGNATURE = "a callable (prompts=[...], completions=[...], **columns) -> list of floats, as TRL calls it"


class JudgeError(ValueError):
    """A judge or score function raised or returned something that is not a valid answer."""


def check_callable(name: str, value: Any, expected: str) -> Callable:
    """``value`` if it is callable, else ``TypeError`` in the wording of :mod:`prefzoo.envs.checks`."""
    if not callable(value):
        raise TypeError(f"{name} must be {expected}, got {value!r} ({type(value).__name__})")
    return value


def columns_of(row: dict | None) -> dict:
    """A data row's columns other than ``prompt`` (None: no row)."""
    return {} if row is None else {key: value for key, value in row.items() if key != "prompt"}


def columns_key(row: dict | None) -> tuple[str, ...]:
    """The part of a cache key that names a row's columns: () without columns, else their JSON."""
    columns = columns_of(row)
    return (json.dumps(columns, sort_keys=True, default=str),) if columns else ()


def checked_scores(call: Callable[[], Any], what: str, shown: Sequence[str], noun: str = "texts") -> np.ndarray:
    """``call()`` as ``len(shown)`` finite floats (``shown``: the inputs, one line each, for errors;
    ``noun``: what they are).

    Raises:
        JudgeError: ``call`` raises, or returns the wrong number of scores or a non-finite or
            non-numeric one (the message names ``what`` and the input).
    """
    where = shown[0] if len(shown) == 1 else f"{len(shown)} {noun} (the first {shown[0]})"
    try:
        values = np.asarray(call(), dtype=np.float64).reshape(-1)
    except Exception as err:  # noqa: BLE001 - reported with the input, then re-raised
        raise JudgeError(f"{what} failed on {where}: {err!r}") from err
    if len(values) != len(shown):
        raise JudgeError(f"{what} returned {len(values)} scores for {where}")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise JudgeError(f"{what} returned {values[bad[0]]} on {shown[bad[0]]}; expected a finite score")
    return values


def bradley_terry(score_a: np.ndarray, score_b: np.ndarray, temperature: float) -> np.ndarray:
    """P(a ≻ b) = σ((s_a − s_b)/T), written as ½(σ(m) + 1 − σ(−m)) so that P(a≻b) + P(b≻a) = 1
    holds to rounding."""
    margin = (np.asarray(score_a, float) - np.asarray(score_b, float)) / temperature
    return 0.5 * (expit(margin) + 1.0 - expit(-margin))


class TextOracle:
    """Base of the text oracles: the cache, the counters and the charge.

    Args:
        name: shown in errors and ``repr``.

    Attributes:
        charge: called with the number of new (paid) evaluations of a batch before any is made;
            the game holding the oracle binds its ``spend`` here (None: nothing is charged).
    """

    has_score = False  # a per-response score exists (logged as lm/score)

    def __init__(self, name: str):
        self.name = str(name)
        self.charge: Callable[[int], None] | None = None
        self.calls = 0
        self.cache_hits = 0
        self._cache: dict = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _pay(self, n: int) -> None:
        """Charge ``n`` new evaluations (which may raise, counting nothing), then count them; a
        negative ``n`` refunds evaluations charged but never made."""
        if n and self.charge is not None:
            self.charge(n)
        self.calls += n

    def _answer_batch(self, keys: list, answers: Callable[[list], Iterator[tuple[Any, float]]]) -> None:
        """Pay for the new ``keys`` as one batch before any is asked (a batch over the budget asks and
        counts nothing), then cache the ``(key, value)`` pairs of ``answers(keys)`` as they come. When
        an answer fails (:class:`JudgeError`), the answers given stay cached and paid and the rest are
        refunded, so a run resumed from the failure pays for none of them twice."""
        if not keys:
            return
        self._pay(len(keys))
        answered = 0
        try:
            for key, value in answers(keys):
                self._cache[key] = value
                answered += 1
        except JudgeError:
            self._pay(answered - len(keys))
            raise

    @property
    def cache_size(self) -> int:
        """The number of cached answers."""
        return len(self._cache)

    def answers_since(self, mark: int) -> list[tuple]:
        """The (key, answer) pairs cached after the first ``mark``, in the order cached (what one process
        of a run across processes shares with the others)."""
        return list(itertools.islice(self._cache.items(), mark, None))

    def add_answers(self, answers: Iterable[tuple]) -> None:
        """Cache (key, answer) pairs obtained elsewhere (by another process), keeping those already cached."""
        for key, value in answers:
            self._cache.setdefault(key, value)

    def state(self) -> dict:
        """Calls, cache hits and the cache as plain data (a checkpoint's): the cache as
        ``[*key, value]`` rows."""
        return {"calls": self.calls, "cache_hits": self.cache_hits,
                "cache": [[*key, value] for key, value in self._cache.items()]}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` (the budget is the holding game's, not restored here).

        Raises:
            ValueError: counters that are not integers >= 0, or a cache row that is not text keys and
                a finite answer (a NaN would be served, and logged, for the rest of the run).
        """
        calls, hits = check_int("calls", state["calls"], low=0), check_int("cache_hits", state["cache_hits"], low=0)
        for row in state["cache"]:
            if not (isinstance(row, list) and len(row) > 1 and all(isinstance(k, str) for k in row[:-1])
                    and isinstance(row[-1], (int, float)) and not isinstance(row[-1], bool)
                    and math.isfinite(row[-1]) and self._valid_answer(row[-1])):
                raise ValueError(f"{self!r}'s cached answers hold {str(row)[:120]}; expected text keys and a "
                                 "finite answer")
        self.calls, self.cache_hits = calls, hits
        self._cache = {tuple(row[:-1]): float(row[-1]) for row in state["cache"]}

    def _valid_answer(self, value: float) -> bool:
        """Whether a cached answer can be one of this oracle's (a score: any finite number)."""
        return True

    def probability(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str],
                    rows: Sequence[dict] | None = None) -> np.ndarray:
        """P(a_i ≻ b_i | prompt_i) for aligned lists of strings (and the prompts' data rows), [n]."""
        raise NotImplementedError

    def score(self, prompts: Sequence[str], responses: Sequence[str],
              rows: Sequence[dict] | None = None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError(f"{self!r} has no per-response score")


class ScoreOracle(TextOracle):
    """Bradley–Terry on a score function: P(a ≻ b) = σ((s(a) − s(b))/T), one score per
    (prompt, response), cached.

    Args:
        score_fn: text → finite float; with ``batched``, a list of texts → as many scores.
            It sees the response (or, with ``include_prompt``, prompt + " " + response).
        temperature: T > 0.
        include_prompt: score the whole text instead of the response alone.
        name: for errors (default: the callable's name).
        batched: ``score_fn`` takes the whole batch of new texts at once.

    Raises:
        TypeError, ValueError: ``score_fn`` is not callable, or T is not a finite number > 0.
        JudgeError: (when asked) ``score_fn`` raises, or returns a non-finite or non-numeric value
            or the wrong number of scores (the message names the function and the text).
    """

    has_score = True

    def __init__(self, score_fn: Callable, temperature: float = 1.0, include_prompt: bool = False,
                 name: str | None = None, batched: bool = False):
        check_callable("score_fn", score_fn, "a callable text -> score (batched: texts -> scores)")
        super().__init__(name or getattr(score_fn, "__name__", type(score_fn).__name__))
        self.score_fn, self.temperature = score_fn, check_real("temperature", temperature, 0.0, low_open=True)
        self.include_prompt, self.batched = bool(include_prompt), bool(batched)

    def _key(self, prompt: str, response: str, row: dict | None) -> tuple:
        """The cache key of a scored response (the score function sees no columns)."""
        return prompt, response

    def _evaluate(self, keys: list, items: list[tuple]) -> Iterator[tuple[Any, float]]:
        """(key, score) pairs of the (prompt, response, row) ``items``: one call per text, or one
        call for the whole batch (``batched``)."""
        texts = [f"{prompt} {response}" if self.include_prompt else response for prompt, response, _ in items]
        what = f"score function {self.name!r}"
        if self.batched:
            yield from zip(keys, checked_scores(lambda: self.score_fn(texts), what, [repr(t) for t in texts]).tolist(),
                           strict=True)
            return
        for key, text in zip(keys, texts, strict=True):
            yield key, float(checked_scores(functools.partial(self.score_fn, text), what, [repr(text)])[0])

    def score(self, prompts: Sequence[str], responses: Sequence[str], rows: Sequence[dict] | None = None) -> np.ndarray:
        """s(prompt_i, response_i), [n]: from the cache, the missing ones (deduplicated) paid for
        as one batch before any is scored."""
        items = list(zip(prompts, responses, [None] * len(responses) if rows is None else rows, strict=True))
        keys = [self._key(*item) for item in items]
        missing = {}
        for key, item in zip(keys, items, strict=True):
            if key not in self._cache:
                missing.setdefault(key, item)
        # paid before counting hits: a batch over the budget counts nothing
        self._answer_batch(list(missing), lambda batch: self._evaluate(batch, [missing[k] for k in batch]))
        self.cache_hits += len(keys) - len(missing)
        return np.array([self._cache[k] for k in keys], dtype=np.float64)

    def probability(self, prompts, a, b, rows=None) -> np.ndarray:
        scores = self.score(list(prompts) * 2, list(a) + list(b), None if rows is None else list(rows) * 2)
        return bradley_terry(scores[:len(a)], scores[len(a):], self.temperature)


def vader_oracle(temperature: float = 0.25) -> ScoreOracle:
    """VADER sentiment (the ``vadersentiment`` package; its lexicon ships inside it) as a
    :class:`ScoreOracle` on the response: s = the compound score in [−1, 1]. T = 0.25 makes a
    full-scale difference (s_a − s_b = 1) a 98% preference.

    Paper: Hutto, Gilbert (2014), "VADER: A Parsimonious Rule-based Model for Sentiment Analysis
    of Social Media Text", ICWSM.

    Raises:
        ImportError: vadersentiment is not installed (``pip install 'prefzoo[vader]'``).
    """
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("the VADER oracle needs vadersentiment: pip install 'prefzoo[vader]'") from err
    analyzer = SentimentIntensityAnalyzer()

    def vader_compound(text: str) -> float:
        return analyzer.polarity_scores(text)["compound"]

    return ScoreOracle(vader_compound, temperature, name="vader")


class PairwiseJudgeOracle(TextOracle):
    """A pairwise judge: ``judge(prompt, a, b)`` → P(a ≻ b) in [0, 1] (a bool or 0/1 is a
    winner), or one of the strings ``"a"``, ``"b"``, ``"tie"``.

    Answers are cached per (prompt, a, b), and the reversed pair is read from the same entry as
    1 − P (one judge call per unordered pair; a judge with a position bias is thereby
    symmetrized to its first ordering). Identical responses tie at ½ without a call.

    Args:
        judge: the callable.
        name: for errors (default: the callable's name).

    Raises:
        TypeError: ``judge`` is not callable.
        JudgeError: (when asked) the judge raises, or answers NaN, a value outside [0, 1] or an
            unknown string (the message names the judge and the input).
    """

    def __init__(self, judge: Callable[[str, str, str], float | str], name: str | None = None):
        check_callable("judge", judge, JUDGE_SIGNATURE)
        super().__init__(name or getattr(judge, "__name__", type(judge).__name__))
        self.judge = judge

    def _ask(self, prompt: str, a: str, b: str, columns: dict) -> float:
        where = f"judge {self.name!r} on prompt={prompt!r}, a={a!r}, b={b!r}" + (f", {columns}" if columns else "")
        try:
            answer = self.judge(prompt, a, b, **columns)
        except Exception as err:  # noqa: BLE001 - reported with the input, then re-raised
            raise JudgeError(f"{where} raised {err!r}") from err
        if isinstance(answer, str):
            if answer.lower() not in WINNERS:
                raise JudgeError(f"{where} answered {answer!r}; expected a probability or one of {list(WINNERS)}")
            return WINNERS[answer.lower()]
        try:
            value = float(answer)
        except (TypeError, ValueError):
            raise JudgeError(f"{where} answered {answer!r}; expected P(a > b) in [0, 1]") from None
        if not self._valid_answer(value):  # also catches NaN
            raise JudgeError(f"{where} answered {value}; expected P(a > b) in [0, 1]")
        return value

    def _valid_answer(self, value: float) -> bool:
        return 0.0 <= value <= 1.0

    def probability(self, prompts, a, b, rows=None) -> np.ndarray:
        """P(a ≻ b | prompt); a row's columns reach the judge as keyword arguments."""
        rows = [None] * len(a) if rows is None else rows
        keys = [(p, ya, yb, *columns_key(row)) for p, ya, yb, row in zip(prompts, a, b, rows, strict=True)]
        missing: dict = {}  # unordered pairs to ask, each in its first ordering, with the row's columns
        for key, row in zip(keys, rows, strict=True):
            prompt, ya, yb, *tail = key
            if ya != yb and not any(k in self._cache or k in missing for k in (key, (prompt, yb, ya, *tail))):
                missing[key] = columns_of(row)
        self._answer_batch(list(missing), lambda batch: ((key, self._ask(*key[:3], missing[key])) for key in batch))
        self.cache_hits += sum(key[1] != key[2] for key in keys) - len(missing)
        return np.array([self._cached(key) for key in keys])

    def _cached(self, key: tuple) -> float:
        """P(a ≻ b) of a cached key (prompt, a, b, *columns): ½ for a = b, else its entry or 1 − its reverse's."""
        prompt, a, b, *tail = key
        if a == b:
            return 0.5
        return self._cache[key] if key in self._cache else 1.0 - self._cache[(prompt, b, a, *tail)]


class RewardFunctionOracle(ScoreOracle):
    """Reward functions as TRL's ``GRPOTrainer`` calls them, weighted and summed:
    s = Σ_k w_k f_k(prompt, completion, **columns), P(a ≻ b) = σ((s_a − s_b)/T) (:func:`bradley_terry`).

    Each function is called once per batch of new completions as
    ``f(prompts=[...], completions=[...], **columns) -> list[float]``: ``prompts`` as in the data
    (text, or chat messages), ``completions`` the response texts (for a conversational prompt
    ``[{"role": "assistant", "content": text}]``, as TRL), and every other column of the rows as a
    list. One paid call (``calls``, the game's budget) is one completion scored by every function;
    scores are cached per (prompt, completion, columns).

    Args:
        reward_funcs: a callable or a non-empty list of them.
        reward_weights: one finite weight per function (default: all 1).
        temperature: T > 0 of the Bradley–Terry preference.

    Raises:
        TypeError, ValueError: a function that is not callable, no function, or weights that are not
            one finite number per function.
        JudgeError: (when asked) a function raises, or returns the wrong number of rewards or a
            non-finite one (None included); the message names the function and the input.
    """

    def __init__(self, reward_funcs: Callable | Sequence[Callable], reward_weights: Sequence[float] | None = None,
                 temperature: float = 1.0):
        funcs = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
        if not funcs:
            raise ValueError(f"reward_funcs must be {REWARD_SIGNATURE}, or a non-empty list of them; got []")
        for i, func in enumerate(funcs):
            check_callable("reward_funcs" if len(funcs) == 1 else f"reward_funcs[{i}]", func, REWARD_SIGNATURE)
        weights = np.ones(len(funcs)) if reward_weights is None else np.asarray(reward_weights, dtype=object)
        if (weights.ndim != 1 or len(weights) != len(funcs)
                or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
                           for w in weights)):
            raise ValueError(f"reward_weights must hold one finite number per reward function ({len(funcs)}), "
                             f"got {reward_weights!r}")
        self.funcs, self.weights = funcs, weights.astype(np.float64)
        self.names = [getattr(f, "__name__", type(f).__name__) for f in funcs]
        super().__init__(self._weighted_sum, temperature, name="+".join(self.names), batched=True)

    def _key(self, prompt: str, response: str, row: dict | None) -> tuple:
        return prompt, response, *columns_key(row)

    def _weighted_sum(self, prompts: list, completions: list, columns: dict) -> np.ndarray:
        """Σ_k w_k f_k over the batch, each function's rewards checked (:func:`checked_scores`)."""
        shown = [f"prompt={p!r}, completion={c!r}" for p, c in zip(prompts, completions, strict=True)]
        total = np.zeros(len(prompts))
        for func, name, weight in zip(self.funcs, self.names, self.weights, strict=True):
            call = functools.partial(func, prompts=prompts, completions=completions, **columns)
            total += weight * checked_scores(call, f"reward function {name!r}", shown, "completions")
        return total

    def _evaluate(self, keys: list, items: list[tuple]) -> Iterator[tuple[Any, float]]:
        prompts = [prompt if row is None else row["prompt"] for prompt, _, row in items]
        completions = [text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]
                       for prompt, (_, text, _) in zip(prompts, items, strict=True)]
        rows = [columns_of(row) for _, _, row in items]
        names = list(dict.fromkeys(name for row in rows for name in row))
        columns = {name: [row.get(name) for row in rows] for name in names}
        yield from zip(keys, self._weighted_sum(prompts, completions, columns).tolist(), strict=True)
