"""LMGame: a Hugging Face causal language model against a counted text oracle.

Contexts are prompts (the train split; a held-out split is kept for estimated metrics),
responses are **int64 handles** into the game's :class:`ResponseStore` (a handle names one
distinct generated token sequence, whatever the prompt), and P(y ≻ y' | x) is the text oracle's
probability on the decoded texts (:mod:`prefzoo.envs.lm.oracles`). π_ref is the model as loaded.
There are no exact services: :meth:`LMGame.estimate_metrics` estimates win rate against π_ref
(with its standard error), KL(π‖π_ref), the oracle score, length and distinct-2 on held-out
prompts.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import metrics
from ..oracle import PreferenceOracle
from .oracles import TextOracle, vader_oracle

ORACLES = ("vader", "reward_model")


def load_pretrained(auto_cls, name: str, **kwargs):
    """``auto_cls.from_pretrained(name)`` with a clear error when ``name`` is neither a local
    folder nor loadable from the hub cache (nothing is downloaded when offline)."""
    path = Path(os.path.expanduser(str(name)))
    local = path.exists() or str(name).startswith((".", "/", "~")) or str(name).count("/") > 1
    if local and not path.is_dir():
        raise FileNotFoundError(f"model path {str(name)!r} does not exist (or is not a folder); give a folder "
                                f"written by save_pretrained, or a hub id (nothing is downloaded when offline)")
    try:
        return auto_cls.from_pretrained(str(path) if local else str(name), **kwargs)
    except OSError as err:
        raise FileNotFoundError(f"cannot load {str(name)!r} with {auto_cls.__name__}: no such local folder and not in "
                                f"the Hugging Face cache (nothing is downloaded when offline): {err}") from err


def read_prompts(prompts: str | os.PathLike | Sequence[str]) -> list[str]:
    """Prompts from a list of strings, a ``.txt`` file (one per non-empty line) or a ``.jsonl``
    file (one object with a ``"prompt"`` string per line).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: no prompts, a non-string prompt, or a malformed ``.jsonl`` line.
    """
    if isinstance(prompts, (str, os.PathLike)):
        path = Path(prompts)
        if not path.is_file():
            raise FileNotFoundError(f"prompts file {str(path)!r} does not exist")
        lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if path.suffix == ".jsonl":
            out = []
            for number, line in enumerate(lines, 1):
                try:
                    out.append(json.loads(line)["prompt"])
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{path}:{number}: expected a JSON object with a \"prompt\" string, got "
                                     f"{line[:80]!r}") from None
            lines = out
        prompts, source = lines, str(path)
    else:
        prompts, source = list(prompts), "prompts"
    if not prompts:
        raise ValueError(f"{source} holds no prompts; expected at least 2 (train and held-out)")
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise ValueError(f"prompts must be strings, got {bad[0]!r}")
    return prompts


class ResponseStore:
    """Generated responses by handle: each distinct token sequence (through its first EOS) gets
    one int64 handle, its token ids and its decoded text."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[np.ndarray] = []
        self.texts: list[str] = []
        self._handles: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self.tokens)

    def add(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """Handles of token rows (new rows are decoded and stored)."""
        handles = np.empty(len(rows), dtype=np.int64)
        for i, row in enumerate(rows):
            row = np.asarray(row, dtype=np.int64)
            key = row.tobytes()
            if key not in self._handles:
                self._handles[key] = len(self.tokens)
                self.tokens.append(row)
                self.texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
            handles[i] = self._handles[key]
        return handles

    def check(self, handles: np.ndarray, name: str) -> np.ndarray:
        handles = np.asarray(handles)
        if handles.size and (not np.issubdtype(handles.dtype, np.integer) or handles.min() < 0
                             or handles.max() >= len(self)):
            raise ValueError(f"{name} must hold response handles in [0, {len(self)}) (from policy.sample or "
                             f"game.sample_ref), got {handles!r}")
        return handles

    def text(self, handles) -> list[str]:
        return [self.texts[h] for h in np.asarray(handles).ravel()]


def generate(model, prompt_ids: Sequence[np.ndarray], rng: np.random.Generator, *, max_new_tokens: int,
             temperature: float, top_p: float, pad_id: int, eos_id: int, device, autocast: bool = False,
             batch_size: int = 256, mixture: Any = None) -> list[np.ndarray]:
    """Sample one continuation per prompt with ``model.generate`` (KV cache, left padding) in
    batches; the torch sampling seed is drawn from ``rng``, so a run is reproducible on a device.
    Returns each response's token ids through its first EOS."""
    import torch

    seed = int(rng.integers(2**63 - 1))
    out: list[np.ndarray] = []
    devices = [device] if torch.device(device).type == "cuda" else []
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.random.fork_rng(devices=devices), torch.no_grad(), amp:
        torch.manual_seed(seed)
        for start in range(0, len(prompt_ids), batch_size):
            chunk = prompt_ids[start:start + batch_size]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(chunk):
                ids[i, width - len(p):], mask[i, width - len(p):] = torch.as_tensor(p), 1
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                       max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=0,
                                       pad_token_id=pad_id, eos_token_id=eos_id)[:, width:].cpu().numpy()
            for row in generated:
                ends = np.flatnonzero(row == eos_id)
                out.append(row[:ends[0] + 1] if len(ends) else row)
    return out


def distinct_n(rows: Sequence[np.ndarray], n: int = 2) -> float:
    """Distinct-n: distinct n-grams over all n-grams of the responses (0 when there are none)."""
    grams = [tuple(row[i:i + n]) for row in rows for i in range(len(row) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


class LMGame(PreferenceOracle):
    """A Hugging Face causal LM as π_ref and policy, prompts as contexts, a text oracle as P.

    Args:
        prompts: a list of strings, or a ``.txt`` / ``.jsonl`` file (:func:`read_prompts`);
            None: the built-in review prompts (:func:`~prefzoo.envs.lm.builtin.default_prompts`).
        model: a local folder or hub id (``from_pretrained``; nothing is downloaded offline);
            None: the built-in model (:func:`~prefzoo.envs.lm.builtin.builtin_model_path`).
        oracle: ``"vader"`` (default), ``"reward_model"`` (``oracle_kwargs`` go to
            :class:`~prefzoo.envs.lm.oracles.RewardModelOracle`, e.g. ``{"model": path}``), or
            a :class:`~prefzoo.envs.lm.oracles.TextOracle` (e.g. a
            :class:`~prefzoo.envs.lm.oracles.PairwiseJudgeOracle`).
        oracle_kwargs: keyword arguments of the named oracle (e.g. ``temperature``, ``max_calls``).
        eval_fraction: share of the prompts held out for the estimated metrics (at least one).
        eval_samples: responses per held-out prompt in :meth:`estimate_metrics`.
        max_new_tokens, temperature, top_p: generation settings (π is the model's distribution
            at ``temperature``; ``top_p`` < 1 truncates sampling, which the log-probabilities do
            not renormalize, as in TRL).
        lora_rank: rank of LoRA adapters on the trainable policy (0: full fine-tuning; needs
            the ``[lora]`` extra).
        seed: seeds the train/held-out split, the game's generator and the reference samples
            of the held-out prompts.
        device: torch device of π_ref's copy inside the game (the env's opponent).

    Raises:
        ValueError: fewer than 2 prompts, bad settings or an unknown oracle.
        FileNotFoundError: a missing prompts file or model path.
    """

    kind = "lm"
    pairwise = True
    exact = False
    enumerable = False
    why_not_exact = "its responses are every token sequence of a real language model, which cannot be listed"

    def __init__(self, prompts: str | os.PathLike | Sequence[str] | None = None, model: str | None = None,
                 oracle: str | TextOracle = "vader", oracle_kwargs: dict | None = None, eval_fraction: float = 0.25,
                 eval_samples: int = 4, max_new_tokens: int = 12, temperature: float = 1.0, top_p: float = 1.0,
                 lora_rank: int = 0, seed: int | None = 0, device: str = "cpu"):
        from transformers import AutoTokenizer

        from .builtin import builtin_model_path, default_prompts

        if not 0 < eval_fraction < 1:
            raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")
        for name, value in (("eval_samples", eval_samples), ("max_new_tokens", max_new_tokens)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if int(lora_rank) != lora_rank or lora_rank < 0:
            raise ValueError(f"lora_rank must be an integer >= 0 (0: no LoRA), got {lora_rank!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        texts = read_prompts(default_prompts() if prompts is None else prompts)
        if len(texts) < 2:
            raise ValueError(f"need at least 2 prompts (train and held-out), got {len(texts)}")
        order = np.random.default_rng(seed).permutation(len(texts))
        n_eval = min(len(texts) - 1, max(1, round(eval_fraction * len(texts))))
        self.prompts = [texts[i] for i in order]  # train prompts (the contexts), then the held-out ones
        self.n_train = len(texts) - n_eval
        self.eval_contexts = np.arange(self.n_train, len(texts))
        self.model_path = str(builtin_model_path() if model is None else model)
        self.tokenizer = load_pretrained(AutoTokenizer, self.model_path)
        if self.tokenizer.pad_token is None:  # e.g. GPT-2: pad with EOS (masked everywhere)
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.max_new_tokens, self.temperature, self.top_p = int(max_new_tokens), float(temperature), float(top_p)
        self.eval_samples, self.lora_rank, self.device = int(eval_samples), int(lora_rank), device
        self.prompt_ids = self._tokenize_prompts()
        super().__init__(self.n_train, features=np.array([[len(p)] for p in self.prompt_ids[:self.n_train]], float),
                         seed=seed)
        self.seed = seed
        self.oracle = self._make_oracle(oracle, oracle_kwargs or {})
        self.store = ResponseStore(self.tokenizer)
        self._ref_model = None
        self._eval_ref: np.ndarray | None = None

    # ------------------------------------------------------------------ construction helpers
    def _tokenize_prompts(self) -> list[np.ndarray]:
        """Token ids per prompt (BOS first when the tokenizer does not add one), left-truncated to
        the model's context minus ``max_new_tokens``, with a warning."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.model_path)
        context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        tok = self.tokenizer
        limit = None if context is None else context - self.max_new_tokens
        if limit is not None and limit < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} leaves no room for a prompt in the model's "
                             f"context of {context} tokens")
        ids = []
        for text in self.prompts:
            row = tok(text)["input_ids"]
            if tok.bos_token_id is not None and (not row or row[0] != tok.bos_token_id):
                row = [tok.bos_token_id, *row]
            ids.append(np.asarray(row, dtype=np.int64))
        long = [i for i, row in enumerate(ids) if limit is not None and len(row) > limit]
        if long:
            warnings.warn(f"{len(long)} prompt(s) longer than the model's context of {context} tokens minus "
                          f"max_new_tokens={self.max_new_tokens} are truncated to their last {limit} tokens "
                          f"(e.g. {self.prompts[long[0]][:60]!r})", stacklevel=3)
            for i in long:
                ids[i] = ids[i][-limit:]
        return ids

    def _make_oracle(self, oracle, kwargs: dict) -> TextOracle:
        if isinstance(oracle, TextOracle):
            return oracle
        if oracle == "vader":
            return vader_oracle(**kwargs)
        if oracle == "reward_model":
            from .oracles import RewardModelOracle

            if "model" not in kwargs:
                raise ValueError("oracle='reward_model' needs oracle_kwargs={'model': <folder or hub id>}")
            return RewardModelOracle(**kwargs)
        raise ValueError(f"oracle must be one of {ORACLES} or a TextOracle, got {oracle!r}")

    # ------------------------------------------------------------------ models and generation
    @property
    def reference_model(self):
        """π_ref: the model as loaded, frozen (loaded on first use)."""
        if self._ref_model is None:
            from transformers import AutoModelForCausalLM

            model = load_pretrained(AutoModelForCausalLM, self.model_path)
            self._ref_model = model.to(self.device).eval().requires_grad_(False)
        return self._ref_model

    def generate(self, model, contexts: np.ndarray, rng: np.random.Generator, device=None,
                 autocast: bool = False) -> np.ndarray:
        """Handles of one response per prompt index in ``contexts`` (train or held-out), sampled
        from ``model`` with the game's generation settings."""
        rows = generate(model, [self.prompt_ids[x] for x in np.asarray(contexts)], rng,
                        max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
                        pad_id=self.tokenizer.pad_token_id, eos_id=self.tokenizer.eos_token_id,
                        device=device or self.device, autocast=autocast)
        return self.store.add(rows)

    def sample_ref(self, contexts, rng) -> np.ndarray:
        """One response handle per context from π_ref."""
        return self.generate(self.reference_model, contexts, rng)

    # ------------------------------------------------------------------ the oracle
    def _check_contexts(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.size and (not np.issubdtype(x.dtype, np.integer) or x.min() < 0 or x.max() >= len(self.prompts)):
            raise ValueError(f"x must hold prompt indices in [0, {len(self.prompts)}), got {x!r}")
        return x

    def preference(self, x, y, y2) -> np.ndarray:
        """P(y ≻ y2 | x) from the text oracle on the decoded prompt and responses (uncounted here;
        the oracle counts its own model or judge calls)."""
        x, y, y2 = np.broadcast_arrays(self._check_contexts(x), self.store.check(y, "y"), self.store.check(y2, "y2"))
        prompts = [self.prompts[i] for i in x.ravel()]
        return self.oracle.probability(prompts, self.store.text(y), self.store.text(y2)).reshape(x.shape)

    def counter_state(self) -> dict[str, Any]:
        """The base counters plus the text oracle's calls, cache hits and cache (a resumed run pays
        no call twice, and its ``max_calls`` counts the whole run)."""
        return {**super().counter_state(), "oracle": self.oracle.state()}

    def load_counter_state(self, state: dict[str, Any]) -> None:
        super().load_counter_state(state)
        self.oracle.load_state(state["oracle"])

    # ------------------------------------------------------------------ estimated metrics
    def evaluation_contexts(self, rng: np.random.Generator | None = None) -> np.ndarray:
        """The held-out prompts, ``eval_samples`` times each (the same set for every estimate)."""
        return np.repeat(self.eval_contexts, self.eval_samples)

    def reference_eval_responses(self) -> np.ndarray:
        """π_ref's responses on the held-out prompts (``eval_samples`` each), drawn once with a
        generator seeded by the game's seed, so every evaluation compares against the same set."""
        if self._eval_ref is None:
            self._eval_ref = self.sample_ref(self.evaluation_contexts(), np.random.default_rng([self.seed or 0, 1]))
        return self._eval_ref

    def estimate_metrics(self, policy, rng) -> dict[str, float]:
        """Estimates on the held-out prompts, ``eval_samples`` policy responses each, against the
        fixed π_ref responses of :meth:`reference_eval_responses` (n pairs):

        - win rate vs π_ref = mean of the oracle's P(y_i ≻ y_ref,i | x_i), standard error
          sd/√n (the Bernoulli outcome's conditional mean, so no comparison noise is added);
        - KL(π‖π_ref) = mean of log π(y_i|x_i) − log π_ref(y_i|x_i) over y_i ~ π (unbiased);
        - mean oracle score (oracles with one), mean length in tokens (EOS excluded), distinct-2;
        - the oracle's cumulative calls and cache hits, and generated tokens per second.
        """
        import torch

        ref = self.reference_eval_responses()
        contexts = self.evaluation_contexts()
        start = time.perf_counter()
        responses = policy.sample(contexts, rng)
        seconds = time.perf_counter() - start
        rows = [self.store.tokens[h] for h in responses]
        p = self.preference(contexts, responses, ref)
        with torch.no_grad():
            xs = torch.as_tensor(contexts, device=policy.device)
            ys = torch.as_tensor(responses, device=policy.device)
            log_ratio = (policy.log_prob(xs, ys) - policy.ref_log_prob(xs, ys)).double().cpu().numpy()
        eos = self.tokenizer.eos_token_id
        content = [row[:-1] if len(row) and row[-1] == eos else row for row in rows]
        out = {metrics.LM_WIN_RATE_VS_REF: float(p.mean()),
               metrics.LM_WIN_RATE_VS_REF_SE: float(p.std(ddof=1) / np.sqrt(len(p))) if len(p) > 1 else float("nan"),
               metrics.LM_KL_TO_REF: float(log_ratio.mean()),
               metrics.LM_LENGTH: float(np.mean([len(row) for row in content])),
               metrics.LM_DISTINCT2: distinct_n(content, 2),
               metrics.LM_ORACLE_CALLS: self.oracle.calls,
               metrics.LM_ORACLE_CACHE_HITS: self.oracle.cache_hits,
               metrics.TOKENS_PER_S: sum(len(row) for row in rows) / max(seconds, 1e-9)}
        if self.oracle.has_score:
            out[metrics.LM_SCORE] = float(self.oracle.score([self.prompts[x] for x in contexts],
                                                            self.store.text(responses)).mean())
        return out

    def show_generations(self, policy, n: int = 4, seed: int = 0) -> list[str]:
        """``prompt -> response`` lines for the first ``n`` held-out prompts (sampled with a
        generator seeded by ``seed``), to print before and after training."""
        contexts = self.eval_contexts[:n]
        handles = policy.sample(contexts, np.random.default_rng(seed))
        return [f"{self.prompts[x]!r} -> {text!r}" for x, text in zip(contexts, self.store.text(handles), strict=True)]
