"""Preferences over text: a reward model, a score function (VADER) or a pairwise judge.

A text oracle maps batches of (prompt, response a, response b) strings to P(a ≻ b | prompt);
:class:`~prefzoo.envs.lm.game.LMGame` decodes its response handles and asks one of these, and
draws the counted Bernoulli outcome itself (``game.compare``), exactly as the exact games do.
Every oracle caches its expensive evaluations (a score per (prompt, response), a judgement per
(prompt, a, b)), counts them (``calls``: evaluations of the model or judge; ``cache_hits``), and
can be capped (``max_calls``): the evaluation that would exceed the cap raises
:class:`OracleBudgetExhausted`, which the runner catches to stop cleanly with a checkpoint. The
counters and the cache are part of a run's checkpoint (:meth:`TextOracle.state`), so the cap is
a budget for the whole run, across resumes and retries.

- :class:`ScoreOracle`: any callable text → score, Bradley–Terry P = σ((s_a − s_b)/T);
  :func:`vader_oracle` is the shipped, offline one (VADER's compound sentiment).
- :class:`RewardModelOracle`: a Hugging Face ``AutoModelForSequenceClassification`` reward
  model, Bradley–Terry on its scores, the text **re-tokenized with the reward model's own
  tokenizer** (never the policy's token ids).
- :class:`PairwiseJudgeOracle`: any callable (prompt, a, b) → P(a ≻ b) or a winner.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from scipy.special import expit


class OracleBudgetExhausted(RuntimeError):
    """The oracle's ``max_calls`` is reached; the run stops (with a checkpoint) instead of paying more."""


class JudgeError(ValueError):
    """A judge or score function raised or returned something that is not a valid answer."""


def bradley_terry(score_a: np.ndarray, score_b: np.ndarray, temperature: float) -> np.ndarray:
    """P(a ≻ b) = σ((s_a − s_b)/T), written as ½(σ(m) + 1 − σ(−m)) so that P(a≻b) + P(b≻a) = 1
    holds to rounding."""
    margin = (np.asarray(score_a, float) - np.asarray(score_b, float)) / temperature
    return 0.5 * (expit(margin) + 1.0 - expit(-margin))


class TextOracle:
    """Base of the text oracles: the cache, the counters and the cap.

    Args:
        name: shown in errors and ``repr``.
        max_calls: at most this many evaluations of the underlying model or judge (cache hits
            are free) in the run, counted across resumes; None: no cap.
    """

    has_score = False  # a per-response score exists (logged as lm/score)

    def __init__(self, name: str, max_calls: int | None = None):
        if max_calls is not None and (int(max_calls) != max_calls or max_calls < 0):
            raise ValueError(f"max_calls must be a non-negative integer or None, got {max_calls!r}")
        self.name, self.max_calls = name, None if max_calls is None else int(max_calls)
        self.calls = 0
        self.cache_hits = 0
        self._cache: dict = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def _charge(self, n: int) -> None:
        """Count ``n`` new evaluations, or raise when they would pass ``max_calls``."""
        if self.max_calls is not None and self.calls + n > self.max_calls:
            raise OracleBudgetExhausted(
                f"{self!r} reached its cap of {self.max_calls} calls ({self.calls} made, {n} more needed); "
                f"raise max_calls to continue (`prefzoo train --resume RUN --max-calls N`)")
        self.calls += n

    def state(self) -> dict:
        """Calls, cache hits and the cache as plain data (a checkpoint's): the cache as
        ``[*key, value]`` rows."""
        return {"calls": self.calls, "cache_hits": self.cache_hits,
                "cache": [[*key, value] for key, value in self._cache.items()]}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state` (the cap stays this oracle's own ``max_calls``)."""
        self.calls, self.cache_hits = state["calls"], state["cache_hits"]
        self._cache = {tuple(row[:-1]): row[-1] for row in state["cache"]}

    def _cached(self, keys: list, evaluate: Callable[[list], Sequence[float]]) -> np.ndarray:
        """Values of ``keys`` from the cache; the missing ones (deduplicated) through ``evaluate``."""
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        self._charge(len(missing))  # before counting hits: a capped batch counts nothing
        self.cache_hits += len(keys) - len(missing)
        if missing:
            self._cache.update(zip(missing, evaluate(missing), strict=True))
        return np.array([self._cache[k] for k in keys], dtype=np.float64)

    def probability(self, prompts: Sequence[str], a: Sequence[str], b: Sequence[str]) -> np.ndarray:
        """P(a_i ≻ b_i | prompt_i) for aligned lists of strings, [n]."""
        raise NotImplementedError

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError(f"{self!r} has no per-response score")


class ScoreOracle(TextOracle):
    """Bradley–Terry on a score function: P(a ≻ b) = σ((s(a) − s(b))/T).

    Args:
        score_fn: callable text → finite float, applied to the response (or, with
            ``include_prompt``, to prompt + " " + response).
        temperature: T > 0.
        include_prompt: score the whole text instead of the response alone.
        name: for errors (default: the callable's name).
        max_calls: cap on ``score_fn`` evaluations (see :class:`TextOracle`).

    Raises:
        JudgeError: ``score_fn`` raises or returns a non-finite or non-numeric value (the message
            names the function and the text).
    """

    has_score = True

    def __init__(self, score_fn: Callable[[str], float], temperature: float = 1.0, include_prompt: bool = False,
                 name: str | None = None, max_calls: int | None = None):
        if not callable(score_fn):
            raise ValueError(f"score_fn must be a callable text -> float, got {score_fn!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        super().__init__(name or getattr(score_fn, "__name__", type(score_fn).__name__), max_calls)
        self.score_fn, self.temperature, self.include_prompt = score_fn, float(temperature), include_prompt

    def _evaluate(self, keys: list) -> list[float]:
        values = []
        for prompt, response in keys:
            text = f"{prompt} {response}" if self.include_prompt else response
            try:
                value = float(self.score_fn(text))
            except Exception as err:  # noqa: BLE001 - reported with the input, then re-raised
                raise JudgeError(f"score function {self.name!r} failed on {text!r}: {err!r}") from err
            if not math.isfinite(value):
                raise JudgeError(f"score function {self.name!r} returned {value} on {text!r}; expected a finite score")
            values.append(value)
        return values

    def score(self, prompts, responses) -> np.ndarray:
        return self._cached(list(zip(prompts, responses, strict=True)), self._evaluate)

    def probability(self, prompts, a, b) -> np.ndarray:
        scores = self.score(list(prompts) * 2, list(a) + list(b))
        return bradley_terry(scores[:len(a)], scores[len(a):], self.temperature)


def vader_oracle(temperature: float = 0.25, max_calls: int | None = None) -> ScoreOracle:
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

    return ScoreOracle(vader_compound, temperature, name="vader", max_calls=max_calls)


class RewardModelOracle(TextOracle):
    """A sequence-classification reward model r(prompt, response), Bradley–Terry P = σ((r_a − r_b)/T).

    The text prompt + " " + response is **re-tokenized with the reward model's own tokenizer**
    (policy token ids never reach it), scored in batches of ``batch_size`` (right padding,
    truncated to the model's context), and cached per (prompt, response). A tokenizer without a
    pad token gets its EOS (or UNK) as pad, and the model's ``pad_token_id`` is set to match, so
    batched scoring reads the last real token.

    Args:
        model: a folder or hub id (``AutoModelForSequenceClassification.from_pretrained``), or a
            loaded model (then ``tokenizer`` is required).
        tokenizer: a tokenizer, or a folder / hub id; default: ``model``'s own.
        temperature: T > 0.
        batch_size: texts per forward pass.
        device: torch device of the reward model.
        max_calls: cap on scored texts (see :class:`TextOracle`).
    """

    has_score = True

    def __init__(self, model, tokenizer=None, temperature: float = 1.0, batch_size: int = 32, device: str = "cpu",
                 max_calls: int | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from .game import load_pretrained

        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            name = str(model)
            tokenizer = tokenizer if tokenizer is not None else name
            model = load_pretrained(AutoModelForSequenceClassification, name)
        elif tokenizer is None:
            raise ValueError("a loaded reward model needs its tokenizer: RewardModelOracle(model, tokenizer=...)")
        else:
            name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        if isinstance(tokenizer, (str, bytes)) or hasattr(tokenizer, "__fspath__"):
            tokenizer = load_pretrained(AutoTokenizer, str(tokenizer))
        super().__init__(name, max_calls)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        model.config.pad_token_id = tokenizer.pad_token_id
        self.model, self.tokenizer = model.to(device).eval().requires_grad_(False), tokenizer
        self.temperature, self.batch_size, self.device = float(temperature), int(batch_size), device
        self.max_length = getattr(model.config, "max_position_embeddings", None) or getattr(
            model.config, "n_positions", None)

    def _evaluate(self, keys: list) -> list[float]:
        import torch

        texts = [f"{prompt} {response}" for prompt, response in keys]
        scores = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt", padding_side="right")
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits
                scores.extend(logits[:, 0].float().cpu().tolist())
        return scores

    def score(self, prompts, responses) -> np.ndarray:
        return self._cached(list(zip(prompts, responses, strict=True)), self._evaluate)

    def probability(self, prompts, a, b) -> np.ndarray:
        scores = self.score(list(prompts) * 2, list(a) + list(b))
        return bradley_terry(scores[:len(a)], scores[len(a):], self.temperature)


WINNERS = {"a": 1.0, "b": 0.0, "tie": 0.5}


class PairwiseJudgeOracle(TextOracle):
    """A pairwise judge: ``judge(prompt, a, b)`` → P(a ≻ b) in [0, 1] (a bool or 0/1 is a
    winner), or one of the strings ``"a"``, ``"b"``, ``"tie"``.

    Answers are cached per (prompt, a, b), and the reversed pair is read from the same entry as
    1 − P (one judge call per unordered pair; a judge with a position bias is thereby
    symmetrized to its first ordering). Identical responses tie at ½ without a call.

    Args:
        judge: the callable.
        name: for errors (default: the callable's name).
        max_calls: cap on judge calls (see :class:`TextOracle`).

    Raises:
        JudgeError: the judge raises, or answers NaN, a value outside [0, 1] or an unknown
            string (the message names the judge and the input).
    """

    def __init__(self, judge: Callable[[str, str, str], float | str], name: str | None = None,
                 max_calls: int | None = None):
        if not callable(judge):
            raise ValueError(f"judge must be a callable (prompt, a, b) -> P(a > b) or a winner, got {judge!r}")
        super().__init__(name or getattr(judge, "__name__", type(judge).__name__), max_calls)
        self.judge = judge

    def _ask(self, prompt: str, a: str, b: str) -> float:
        where = f"judge {self.name!r} on prompt={prompt!r}, a={a!r}, b={b!r}"
        try:
            answer = self.judge(prompt, a, b)
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
        if not 0.0 <= value <= 1.0:  # also catches NaN
            raise JudgeError(f"{where} answered {value}; expected P(a > b) in [0, 1]")
        return value

    def probability(self, prompts, a, b) -> np.ndarray:
        keys = list(zip(prompts, a, b, strict=True))
        missing: dict = {}  # unordered pairs to ask, each in its first ordering
        for key in keys:
            prompt, ya, yb = key
            reverse = (prompt, yb, ya)
            if ya != yb and not any(k in self._cache or k in missing for k in (key, reverse)):
                missing[key] = None
        self._charge(len(missing))  # the whole batch at once: a capped batch asks and counts nothing
        self.cache_hits += sum(ya != yb for _, ya, yb in keys) - len(missing)
        for key in missing:
            self._cache[key] = self._ask(*key)
        return np.array([0.5 if ya == yb else self._cache[p, ya, yb] if (p, ya, yb) in self._cache
                         else 1.0 - self._cache[p, yb, ya] for p, ya, yb in keys])
