"""LMGame: a Hugging Face causal language model against a counted text oracle.

Contexts are prompts (the train split; a held-out split is kept for estimated metrics), each a data
row whose other columns reach the oracle (:mod:`prefzoo.envs.lm.data`; chat prompts are rendered with
the tokenizer's chat template),
responses are **int64 handles** into the game's :class:`ResponseStore` (a handle names one
distinct generated token sequence, whatever the prompt), and P(y ≻ y' | x) is the text oracle's
probability on the decoded texts (:mod:`prefzoo.envs.judges`, a reward model,
:class:`~prefzoo.envs.lm.hf.RewardModelOracle`, or TRL-style reward functions, whose weighted sum
reward-based algorithms also read directly: :meth:`LMGame.rewards`). π_ref is the model as loaded. The oracle's paid
evaluations (cache misses) are the game's budget (``max_queries``). There are no exact services:
:meth:`LMGame.evaluate` estimates win rate against π_ref (with its standard error), KL(π‖π_ref),
the oracle score, length and distinct-2 on held-out prompts.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from .. import metrics
from ..checks import check_bool, check_choice, check_int, check_real, closest_hint
from ..judges import JUDGE_SIGNATURE, PairwiseJudgeOracle, RewardFunctionOracle, TextOracle, vader_oracle
from ..oracle import PreferenceOracle, clustered_mean_se
from .data import read_rows, render_prompt
from .hf import RewardModelOracle, context_length, ensure_pad_token, generate, load_pretrained, tokenize_prompts
from .sampling import SamplingDistribution

ORACLES = ("vader", "reward_model")
ACCEPTED_ORACLES = f"one of {ORACLES}, a TextOracle (e.g. a ScoreOracle) or {JUDGE_SIGNATURE}"
DTYPES = ("auto", "fp32", "bf16", "fp16")


def make_peft_config(peft_config: Any, lora_rank: int):
    """The ``peft`` config of ``LMGame(peft_config=)``: a ``peft.PeftConfig`` as is, or a dict, read
    by ``peft.get_peft_config`` when it names its ``peft_type`` and as ``peft.LoraConfig(**dict)``
    otherwise; None: none.

    Raises:
        ImportError: no ``peft`` (the ``[lora]`` extra).
        TypeError, ValueError: anything else, a dict the config class refuses, a prompt-learning
            config (its virtual tokens would shift the scored positions), or ``lora_rank`` > 0 as well.
    """
    if peft_config is None:
        return None
    if lora_rank:
        raise ValueError(f"give lora_rank= or peft_config=, not both (got lora_rank={lora_rank})")
    try:
        import peft
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("peft_config needs peft: pip install 'prefzoo[lora]'") from err
    if isinstance(peft_config, dict):
        try:
            config = (peft.get_peft_config(dict(peft_config)) if "peft_type" in peft_config
                      else peft.LoraConfig(**peft_config))
        except (TypeError, ValueError, KeyError) as err:
            raise ValueError(f"peft_config {peft_config!r} is not a valid peft config: {err}") from err
    elif isinstance(peft_config, peft.PeftConfig):
        config = peft_config
    else:
        raise TypeError(f"peft_config must be a peft config (e.g. peft.LoraConfig(...)) or a dict of LoraConfig "
                        f"arguments, got {peft_config!r} ({type(peft_config).__name__})")
    if config.is_prompt_learning:
        raise ValueError(f"peft_config of type {config.peft_type} prepends virtual tokens, which the scored "
                         "positions do not allow; give an adapter config (LoRA, IA3, ...)")
    return config


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


def distinct_n(rows: Sequence[np.ndarray], n: int = 2) -> float:
    """Distinct-n: distinct n-grams over all n-grams of the responses (0 when there are none)."""
    grams = [tuple(row[i:i + n]) for row in rows for i in range(len(row) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def make_text_oracle(oracle: str | TextOracle | Callable | None = None, kwargs: dict | None = None,
                     reward_funcs: Callable | Sequence[Callable] | None = None,
                     reward_weights: Sequence[float] | None = None) -> TextOracle:
    """The text oracle of ``LMGame(oracle=, oracle_kwargs=, reward_funcs=, reward_weights=)``: the
    reward functions in a :class:`RewardFunctionOracle`, a name in :data:`ORACLES` (None: ``"vader"``)
    built with ``kwargs``, a :class:`TextOracle` as is, or a judge callable in a :class:`PairwiseJudgeOracle`.

    Raises:
        TypeError, ValueError: anything else (the message lists what is accepted), ``kwargs`` that
            are not a mapping, or given with a :class:`TextOracle` object, both an oracle and reward
            functions, or weights without functions.
    """
    if kwargs is not None and not isinstance(kwargs, dict):
        raise TypeError(f"oracle_kwargs must be a mapping of keyword arguments, got {kwargs!r} "
                        f"({type(kwargs).__name__})")
    kwargs = dict(kwargs or {})
    if "max_calls" in kwargs:
        raise TypeError("oracle_kwargs takes no max_calls: the oracle's paid calls are the game's budget, "
                        "LMGame(max_queries=N) (`prefzoo train --max-calls N`)")
    if reward_funcs is not None:
        if oracle is not None:
            raise ValueError(f"give oracle= or reward_funcs=, not both (got oracle={oracle!r}): the reward functions "
                             "are the oracle, P(a > b) = sigmoid(r(a) - r(b))")
        return RewardFunctionOracle(reward_funcs, reward_weights, **kwargs)
    if reward_weights is not None:
        raise ValueError("reward_weights weigh reward_funcs; give reward_funcs= too")
    oracle = "vader" if oracle is None else oracle
    if isinstance(oracle, TextOracle):
        if kwargs:
            raise ValueError(f"oracle_kwargs {sorted(kwargs)} configure a named oracle or a judge callable; "
                             f"give them to the {type(oracle).__name__} when you build it")
        return oracle
    if isinstance(oracle, str):
        if oracle not in ORACLES:
            raise ValueError(f"unknown oracle {oracle!r}{closest_hint(oracle, ORACLES)}; expected {ACCEPTED_ORACLES}")
        if oracle == "reward_model" and "model" not in kwargs:
            raise ValueError("oracle='reward_model' needs oracle_kwargs={'model': <folder or hub id>}")
        return vader_oracle(**kwargs) if oracle == "vader" else RewardModelOracle(**kwargs)
    if callable(oracle) and not isinstance(oracle, type):
        return PairwiseJudgeOracle(oracle, **kwargs)
    raise TypeError(f"oracle must be {ACCEPTED_ORACLES}, got {oracle!r} ({type(oracle).__name__})")


class LMGame(PreferenceOracle):
    """A Hugging Face causal LM as π_ref and policy, prompts as contexts, a text oracle as P.

    Args:
        prompts: a list of prompts (or of rows ``{"prompt": ..., **columns}``), a ``.txt`` / ``.jsonl``
            file, a ``datasets.Dataset`` / ``IterableDataset``, a ``save_to_disk`` folder or a hub
            dataset id (:func:`~prefzoo.envs.lm.data.read_rows`), with a ``prompt`` column of text or chat
            messages (rendered with the tokenizer's chat template, generation prompt added) whose other
            columns reach the judge or reward functions as keyword arguments; None: the built-in review
            prompts (:func:`~prefzoo.envs.lm.builtin.default_prompts`).
        eval_prompts: the held-out prompts, in any form ``prompts`` takes; None: ``eval_fraction`` of ``prompts``.
        model: a local folder or hub id (``from_pretrained``; nothing is downloaded offline);
            None: the built-in model (:func:`~prefzoo.envs.lm.builtin.builtin_model_path`).
        oracle: ``"vader"`` (None, the default, without ``reward_funcs``; :func:`~prefzoo.envs.judges.vader_oracle`),
            ``"reward_model"`` (:class:`~prefzoo.envs.lm.hf.RewardModelOracle`, e.g.
            ``oracle_kwargs={"model": path}``), a :class:`~prefzoo.envs.judges.TextOracle`, or a
            pairwise judge callable ``(prompt, a, b) -> P(a ≻ b)`` or a winner ``"a"``/``"b"``/``"tie"``
            (wrapped in :class:`~prefzoo.envs.judges.PairwiseJudgeOracle`).
        oracle_kwargs: keyword arguments of a named oracle, of the judge's wrapper or of the reward
            functions' oracle (e.g. ``temperature``).
        reward_funcs: instead of ``oracle``, a reward function or a list of them, called as TRL calls
            them, ``f(prompts=[...], completions=[...], **columns) -> list[float]``
            (:class:`~prefzoo.envs.judges.RewardFunctionOracle`): reward-based algorithms read their
            weighted sum (:meth:`rewards`), the others the preference σ((r(a) − r(b))/T), T = 1.
        reward_weights: one weight per reward function (default: all 1).
        eval_fraction: share of the prompts held out for the estimated metrics, in (0, 1) (at least one
            prompt; default 0.25); not with ``eval_prompts``.
        eval_samples: responses per held-out prompt in :meth:`evaluate` (>= 1).
        max_new_tokens, temperature, top_p: generation settings (π is the model's distribution
            at ``temperature`` > 0, truncated to the nucleus ``top_p`` in (0, 1]).
        generation_kwargs: further sampling settings, applied alike in sampling and in scoring
            (:class:`~prefzoo.envs.lm.sampling.SamplingDistribution`: ``top_k``, ``min_p``,
            ``repetition_penalty``, ``no_repeat_ngram_size``, ``typical_p``, ``epsilon_cutoff``,
            ``eta_cutoff``); any other is refused by name.
        lora_rank: rank of LoRA adapters on the trainable policy (0: full fine-tuning; needs
            the ``[lora]`` extra).
        peft_config: instead of ``lora_rank``, any ``peft`` adapter config, or a dict of one
            (:func:`make_peft_config`).
        micro_batch_size: rows per forward pass of the policy (None: the whole batch); the gradient
            is still the whole batch's (:class:`~prefzoo.algorithms.lm_policy.LMPolicy`).
        gradient_checkpointing: recompute the policy's layer activations in the backward pass
            (the model's own ``gradient_checkpointing_enable``): less memory, the same gradients.
        dtype: the policy's compute precision, ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast;
            log-probabilities summed in float32); ``"auto"``: bf16 on CUDA, fp32 on CPU.
        seed: seeds the train/held-out split, the game's generator and the reference samples
            of the held-out prompts.
        device: torch device of π_ref's copy inside the game (the env's opponent).
        max_queries: the run's budget of the oracle's paid evaluations (cache misses; the oracle
            charges them to :meth:`spend`), None: no budget.

    Raises:
        TypeError, ValueError: fewer than 2 prompts, a row without a valid prompt, chat prompts for a
            tokenizer without a chat template, a bad setting, or an oracle not among those accepted.
        FileNotFoundError: a missing prompts file or model path, or a hub dataset id while offline.
    """

    responses = "text"
    payoff = "preference"
    exact = False
    listed = False
    pays_per_query = False  # the text oracle charges its paid calls (cache hits are free)
    why_not_exact = "its responses are every token sequence of a real language model, which cannot be listed"

    def __init__(self, prompts: Any = None, model: str | None = None, oracle: str | TextOracle | Callable | None = None,
                 oracle_kwargs: dict | None = None, eval_fraction: float | None = None, eval_samples: int = 4,
                 max_new_tokens: int = 12, temperature: float = 1.0, top_p: float = 1.0, lora_rank: int = 0,
                 seed: int | None = 0, device: str = "cpu", max_queries: int | None = None, eval_prompts: Any = None,
                 reward_funcs: Callable | Sequence[Callable] | None = None,
                 reward_weights: Sequence[float] | None = None, generation_kwargs: dict | None = None,
                 peft_config: Any = None, micro_batch_size: int | None = None, gradient_checkpointing: bool = False,
                 dtype: str = "auto"):
        from transformers import AutoConfig, AutoTokenizer

        from .builtin import builtin_model_path, default_prompts

        if eval_fraction is not None and eval_prompts is not None:
            raise ValueError("give eval_prompts= (the held-out set) or eval_fraction= (a share of prompts held out), "
                             "not both")
        eval_fraction = check_real("eval_fraction", 0.25 if eval_fraction is None else eval_fraction, 0.0, 1.0,
                                   low_open=True, high_open=True)
        self.eval_samples = check_int("eval_samples", eval_samples, low=1)
        self.max_new_tokens = check_int("max_new_tokens", max_new_tokens, low=1)
        self.temperature = check_real("temperature", temperature, 0.0, low_open=True)
        self.top_p = check_real("top_p", top_p, 0.0, 1.0, low_open=True)
        self.lora_rank = check_int("lora_rank", lora_rank, low=0)
        self.sampling = SamplingDistribution(self.temperature, self.top_p, generation_kwargs)
        self.peft_config = make_peft_config(peft_config, self.lora_rank)
        self.micro_batch_size = None if micro_batch_size is None else check_int("micro_batch_size", micro_batch_size,
                                                                                low=1)
        self.gradient_checkpointing = check_bool("gradient_checkpointing", gradient_checkpointing)
        self.dtype = check_choice("dtype", dtype, DTYPES)
        self.seed = None if seed is None else check_int("seed", seed, low=0)
        self.set_budget(max_queries)  # checked before anything is loaded
        self.device = device
        self.oracle = make_text_oracle(oracle, oracle_kwargs, reward_funcs, reward_weights)
        self.has_reward = reward_funcs is not None
        rows = read_rows(default_prompts() if prompts is None else prompts)
        self._split_rows(rows, None if eval_prompts is None else read_rows(eval_prompts, "eval_prompts"), eval_fraction)
        self.model_path = str(builtin_model_path() if model is None else model)
        self.tokenizer = ensure_pad_token(load_pretrained(AutoTokenizer, self.model_path), f"model {self.model_path!r}")
        context = context_length(load_pretrained(AutoConfig, self.model_path))
        rendered = [render_prompt(self.tokenizer, row["prompt"], f"model {self.model_path!r}") for row in self.rows]
        self.prompts = [text for text, _ in rendered]  # what the model reads and the judge sees
        self.prompt_ids = tokenize_prompts(self.tokenizer, self.prompts, context, self.max_new_tokens,
                                           [templated for _, templated in rendered])
        super().__init__(self.n_train, features=np.array([[len(p)] for p in self.prompt_ids[:self.n_train]], float),
                         seed=self.seed, max_queries=max_queries)
        self.oracle.charge = self.spend  # the oracle's paid evaluations are this game's budget
        self.store = ResponseStore(self.tokenizer)
        self._ref_model = None
        self._eval_ref: np.ndarray | None = None

    def _split_rows(self, rows: list[dict], eval_rows: list[dict] | None, eval_fraction: float) -> None:
        """``self.rows``: the train rows (the contexts) first, then the held-out ones: ``eval_rows``,
        or ``eval_fraction`` of the (seeded) shuffled ``rows``."""
        if eval_rows is None:
            if len(rows) < 2:
                raise ValueError(f"need at least 2 prompts (train and held-out), got {len(rows)}")
            order = np.random.default_rng(self.seed).permutation(len(rows))
            n_eval = min(len(rows) - 1, max(1, round(eval_fraction * len(rows))))
            rows, eval_rows = [rows[i] for i in order[:-n_eval]], [rows[i] for i in order[-n_eval:]]
        self.rows = rows + eval_rows
        self.n_train = len(rows)
        self.eval_contexts = np.arange(self.n_train, len(self.rows))

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
                 amp_dtype=None) -> np.ndarray:
        """Handles of one response per prompt index in ``contexts`` (train or held-out), sampled
        from ``model`` with the game's generation settings (:attr:`sampling`), under autocast to
        ``amp_dtype`` where one is given."""
        rows = generate(model, [self.prompt_ids[x] for x in np.asarray(contexts)], rng,
                        max_new_tokens=self.max_new_tokens, distribution=self.sampling,
                        pad_id=self.tokenizer.pad_token_id, eos_id=self.tokenizer.eos_token_id,
                        device=device or self.device, amp_dtype=amp_dtype)
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
        """P(y ≻ y2 | x) from the text oracle on the decoded prompt and responses (the oracle
        counts its model or judge calls and charges the new ones to :meth:`spend`)."""
        x, y, y2 = np.broadcast_arrays(self._check_contexts(x), self.store.check(y, "y"), self.store.check(y2, "y2"))
        prompts, rows = [self.prompts[i] for i in x.ravel()], [self.rows[i] for i in x.ravel()]
        return self.oracle.probability(prompts, self.store.text(y), self.store.text(y2), rows).reshape(x.shape)

    def rewards(self, x, y) -> np.ndarray:
        """r(x, y): the reward functions' weighted sum on the decoded responses (``has_reward`` games),
        each element one counted query (``queries``); new scores are paid calls like any oracle call.

        Raises:
            TypeError: the game has no reward functions (``reward_funcs``).
        """
        if not self.has_reward:
            raise TypeError(f"this LMGame's oracle {self.oracle!r} gives preferences, not rewards; "
                            "build it with reward_funcs= to read rewards")
        x, y = np.broadcast_arrays(self._check_contexts(x), self.store.check(y, "y"))
        scores = self.oracle.score([self.prompts[i] for i in x.ravel()], self.store.text(y),
                                   [self.rows[i] for i in x.ravel()])
        self.queries += x.size
        return scores.reshape(x.shape)

    def counter_state(self) -> dict[str, Any]:
        """The base counters (``spent`` included) plus the text oracle's calls, cache hits and cache:
        a resumed run pays no call twice, and its ``max_queries`` counts the whole run."""
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

    def evaluate(self, policy, rng: np.random.Generator) -> dict[str, float]:
        """The estimated metrics of ``policy`` (an LM policy: ``sample``, ``log_prob``,
        ``ref_log_prob``, ``device``) on the held-out prompts, ``eval_samples`` policy responses each, against the
        fixed π_ref responses of :meth:`reference_eval_responses` (n pairs):

        - ``est/`` win rate vs π_ref = mean of the oracle's P(y_i ≻ y_ref,i | x_i) (the Bernoulli
          outcome's conditional mean, so no comparison noise is added);
        - ``est/`` KL(π‖π_ref) = mean over y_i ~ π of the per-token KL Σ_t KL(π(·|x, y_<t) ‖ π_ref(·|x, y_<t))
          (``policy.token_kl``; unbiased and never negative, unlike the sequence log-ratio
          log π(y|x) − log π_ref(y|x));
        - both with cluster-robust standard errors over the held-out prompts
          (:func:`~prefzoo.envs.oracle.clustered_mean_se`: a prompt's responses are not independent).
          The π_ref responses are one fixed draw, so every evaluation of a run (and every run of
          the game) shares that draw's offset: the curves compare exactly, while the level carries
          the draw's error;
        - ``lm/``: mean oracle score (oracles with one), mean length in tokens (EOS excluded),
          distinct-2 (distinct bigrams over all bigrams of the responses, pooled; not Li et al.'s
          per-token normalization);
          the oracle's cumulative calls and cache hits; generated tokens per second.

        The oracle's new evaluations are charged to the budget like any other.
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
            token_kl = policy.token_kl(xs, ys).double().cpu().numpy()
        eos = self.tokenizer.eos_token_id
        content = [row[:-1] if len(row) and row[-1] == eos else row for row in rows]
        (win, win_se), (kl, kl_se) = clustered_mean_se(p, contexts), clustered_mean_se(token_kl, contexts)
        out = {metrics.EST_WIN_RATE_VS_REF: win, metrics.EST_WIN_RATE_VS_REF_SE: win_se,
               metrics.EST_KL_TO_REF: kl, metrics.EST_KL_TO_REF_SE: kl_se,
               metrics.LM_LENGTH: float(np.mean([len(row) for row in content])),
               metrics.LM_DISTINCT2: distinct_n(content, 2),
               metrics.LM_ORACLE_CALLS: self.oracle.calls,
               metrics.LM_ORACLE_CACHE_HITS: self.oracle.cache_hits,
               metrics.TOKENS_PER_S: sum(len(row) for row in rows) / max(seconds, 1e-9)}
        if self.oracle.has_score:
            out[metrics.LM_SCORE] = float(self.oracle.score([self.prompts[x] for x in contexts],
                                                            self.store.text(responses),
                                                            [self.rows[x] for x in contexts]).mean())
        return out

    def show_generations(self, policy, n: int = 4, seed: int = 0) -> list[str]:
        """``prompt -> response`` lines for the first ``n`` held-out prompts (sampled with a
        generator seeded by ``seed``), to print before and after training."""
        contexts = self.eval_contexts[:n]
        handles = policy.sample(contexts, np.random.default_rng(seed))
        return [f"{self.prompts[x]!r} -> {text!r}" for x, text in zip(contexts, self.store.text(handles), strict=True)]
