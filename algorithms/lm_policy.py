"""A Hugging Face causal LM as a sample-mode policy on :class:`~prefzoo.envs.lm.game.LMGame`.

It exposes the calls every loss uses (as :class:`~prefzoo.algorithms.policies.BanditPolicy` and
the sequence policies do), with responses as the game's int64 handles:
``sample(contexts, rng)`` (batched ``model.generate`` with the KV cache; the torch seed is drawn
from the numpy generator), ``log_prob(contexts, responses)`` (log π_θ(y|x): one teacher-forced
forward pass over [left-padded prompt, response], under the same logits processing as sampling)
and ``ref_log_prob`` (the same pass through a frozen copy of the initial model, π_ref). The policy
has no table: ``probs()`` and ``log_probs()`` raise. π_θ = π_ref at init (the same weights), dropout
off (eval mode, so log-probabilities are deterministic). The game's memory controls apply:
``micro_batch_size`` (forward passes by micro-batch, the whole batch's gradient), gradient
checkpointing, ``dtype`` (autocast; bf16 on CUDA by default) and adapters (``lora_rank`` or any
``peft_config``).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn


class Shared:
    """A reference that ``copy.deepcopy`` keeps (a policy snapshot shares the game and π_ref)."""

    def __init__(self, value):
        self.value = value

    def __deepcopy__(self, memo):
        return self


class Detached:
    """A reference that ``copy.deepcopy`` drops (None in the copy): a data-parallel wrapper belongs to
    the live policy, never to a snapshot of it."""

    def __init__(self, value=None):
        self.value = value

    def __deepcopy__(self, memo):
        return Detached()


AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``LMGame(dtype=)`` on ``device`` (None: float32, no autocast):
    ``"auto"`` is bf16 on CUDA and fp32 on CPU.

    Raises:
        ValueError: ``dtype`` the device cannot run: fp16 off CUDA (CPU autocast is bf16's), bf16 on a
            GPU without bfloat16.
    """
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if dtype == "fp16" and device.type != "cuda":
        raise ValueError(f"dtype='fp16' needs a CUDA device (fp16 autocast with loss scaling), got device "
                         f"{str(device)!r}; on CPU use dtype='bf16' or 'fp32'")
    if dtype == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"dtype='bf16': the GPU {str(device)!r} does not support bfloat16; use 'fp16' or 'fp32'")
    return AMP_DTYPES[dtype]


class _MicroBatched(torch.autograd.Function):
    """``method(model, contexts, responses)`` (log π_θ(y|x) [n], or per token [n, R]) in forward passes of
    ``micro_batch_size`` rows, with the whole batch's gradient: the forward runs without a graph; the
    backward re-runs each micro-batch with one and back-propagates the loss's gradient for its rows, so
    the parameters' gradients sum Σ_chunks J_chunkᵀ g_chunk = Jᵀ g exactly (the chain rule), whatever
    the loss (a mean, a sum, a group normalization, a per-token aggregation), with one micro-batch's
    activations alive at a time. ``anchor`` is a scalar that requires grad, so that autograd calls the
    backward. Needs ``loss.backward()`` (the gradients are accumulated into the parameters' ``.grad``, as
    reentrant checkpointing does). Under a data-parallel wrapper (DDP) the replays run through it, all but
    the last inside its ``no_sync()``: the processes average the accumulated gradient once, as in
    gradient accumulation."""

    @staticmethod
    def forward(ctx, anchor, policy, method, contexts, responses):
        ctx.policy, ctx.method, ctx.batch = policy, method, (contexts, responses)
        with torch.no_grad():
            return policy._chunked(policy.model, contexts, responses, method)

    @staticmethod
    def backward(ctx, grad):
        contexts, responses = ctx.batch
        with torch.enable_grad():
            model = ctx.policy._grad_model()
            chunks = ctx.policy._chunks(len(contexts))
            for k, rows in enumerate(chunks):
                last = k == len(chunks) - 1
                with contextlib.nullcontext() if last or model is ctx.policy.model else model.no_sync():
                    out = ctx.method(model, contexts[rows], responses[rows])
                    torch.autograd.backward(out, grad[rows][tuple(map(slice, out.shape))])  # a chunk's own width
        return None, None, None, None, None


def _concat_rows(parts: list[torch.Tensor]) -> torch.Tensor:
    """Micro-batches' outputs [rows] or [rows, R_chunk] stacked by rows, per-token ones right-padded with 0
    to the widest chunk (the batch's longest response)."""
    if parts[0].dim() == 1:
        return torch.cat(parts)
    width = max(part.shape[1] for part in parts)
    return torch.cat([torch.nn.functional.pad(part, (0, width - part.shape[1])) for part in parts])


class LMPolicy(nn.Module):
    """π_θ(y|x) = Π_t softmax(processed logits_t)[y_t], processed by the game's sampling settings
    (:class:`~prefzoo.envs.lm.sampling.SamplingDistribution`: temperature, top-p, ``generation_kwargs``),
    the distribution :meth:`sample` draws from.

    Args:
        game: the :class:`~prefzoo.envs.lm.game.LMGame` (model folder, prompts, response store,
            generation settings, ``lora_rank`` / ``peft_config``, ``micro_batch_size``,
            ``gradient_checkpointing`` and ``dtype``).
        device: torch device of the policy and of its frozen π_ref copy.

    Raises:
        ValueError: ``game`` is not an LM game, or its ``dtype`` does not run on ``device``.
        ImportError: ``lora_rank`` > 0 without peft (``pip install 'prefzoo[lora]'``).
    """

    def __init__(self, game, device: torch.device):
        super().__init__()
        if getattr(game, "responses", None) != "text":
            raise ValueError(f"LMPolicy needs an LM game (prefzoo/LMGame-v0), got a {type(game).__name__}")
        from transformers import AutoModelForCausalLM

        from prefzoo.envs.lm.hf import load_pretrained

        self._game, self.device = Shared(game), torch.device(device)
        self.amp_dtype = amp_dtype(game.dtype, self.device)
        # fp16 gradients are scaled against underflow (Algorithm.fit unscales them before clipping and stepping)
        self.grad_scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        model = load_pretrained(AutoModelForCausalLM, game.model_path).to(self.device).eval()
        # frozen π_ref (not a submodule: neither trained nor checkpointed, shared by snapshots)
        self._ref = Shared(copy.deepcopy(model).requires_grad_(False))
        if game.gradient_checkpointing:
            self._enable_checkpointing(model)
        self.model = self._with_adapters(model, game)
        self.micro_batch_size = game.micro_batch_size
        self._anchor = torch.ones((), requires_grad=True)  # not a parameter (see _MicroBatchedLogProb)
        self._batch_key, self._batch = None, None
        self._data_parallel = Detached()  # set_data_parallel's wrapper (None: the model itself)
        self.train(False)

    @staticmethod
    def _enable_checkpointing(model) -> None:
        """The model's own gradient checkpointing (non-reentrant: adapters' gradients pass frozen
        embeddings), armed per layer by :meth:`train` (transformers' ``GradientCheckpointingLayer``).

        Raises:
            ValueError: transformers without per-layer checkpointing (< 4.52), or a model without it.
        """
        try:
            from transformers.modeling_layers import GradientCheckpointingLayer
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ValueError("gradient_checkpointing=True needs transformers >= 4.52 (per-layer checkpointing, "
                             "armed without putting the model in training mode)") from err
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers 5's name
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:  # pragma: no cover - transformers 4
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if not any(isinstance(m, GradientCheckpointingLayer) for m in model.modules()):
            raise ValueError(f"gradient_checkpointing=True: {type(model).__name__}'s layers are no "
                             "GradientCheckpointingLayer, so checkpointing cannot be armed in eval mode")

    @staticmethod
    def _with_adapters(model, game):
        """``model`` with the game's LoRA (``lora_rank``) or ``peft_config`` adapters, else as is."""
        config = game.peft_config
        if game.lora_rank:
            try:
                from peft import LoraConfig
            except ImportError as err:  # pragma: no cover - depends on the environment
                raise ImportError("lora_rank > 0 needs peft: pip install 'prefzoo[lora]'") from err
            config = LoraConfig(r=game.lora_rank, lora_alpha=2 * game.lora_rank, target_modules="all-linear",
                                lora_dropout=0.0)
        if config is None:
            return model
        from peft import get_peft_model

        return get_peft_model(model, copy.deepcopy(config))

    @property
    def game(self):
        return self._game.value

    def set_data_parallel(self, wrapper) -> None:
        """Route the forward passes that carry a gradient through ``wrapper``, the model as
        ``accelerator.prepare`` returned it (DDP: the backward averages the gradients over processes);
        sampling, passes without gradient, checkpoints and export keep the model itself."""
        self._data_parallel = Detached(wrapper)

    def _grad_model(self):
        """The model of a forward pass: the data-parallel wrapper where one is set and gradients are on."""
        wrapper = self._data_parallel.value
        return self.model if wrapper is None or not torch.is_grad_enabled() else wrapper

    def train(self, mode: bool = True):
        """Always eval mode (dropout off): the losses need deterministic log-probabilities. Under
        gradient checkpointing only the checkpointed layers themselves report training, which is what
        arms their checkpoint (only where gradients are on: generation keeps its KV cache); their
        submodules, dropout included, and the model around them stay in eval mode."""
        super().train(False)
        if self.game.gradient_checkpointing:
            from transformers.modeling_layers import GradientCheckpointingLayer

            for module in self.model.modules():
                if isinstance(module, GradientCheckpointingLayer) and module.gradient_checkpointing:
                    module.training = True
        return self

    def _amp(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    # ------------------------------------------------------------------ teacher forcing
    def _inputs(self, contexts: torch.Tensor, responses: torch.Tensor):
        """[left-padded prompt | right-padded response] ids, attention mask, position ids and the
        response mask (memoized for the last batch: the losses reuse one batch for every step)."""
        x, y = contexts.cpu().numpy(), responses.cpu().numpy()
        key = (x.tobytes(), y.tobytes())
        if key != self._batch_key:
            game = self.game
            prompts = [game.prompt_ids[i] for i in x]
            replies = [game.store.tokens[h] for h in game.store.check(y, "responses")]
            P, R = max(len(p) for p in prompts), max(1, max(len(r) for r in replies))
            ids = np.full((len(x), P + R), game.tokenizer.pad_token_id, dtype=np.int64)
            mask = np.zeros_like(ids)
            for i, (p, r) in enumerate(zip(prompts, replies, strict=True)):
                ids[i, P - len(p):P + len(r)] = np.concatenate([p, r])
                mask[i, P - len(p):P + len(r)] = 1
            ids, mask = torch.as_tensor(ids, device=self.device), torch.as_tensor(mask, device=self.device)
            position = (mask.cumsum(1) - 1).clamp(min=0)
            self._batch_key, self._batch = key, (ids, mask, position, P)
        return self._batch

    def _token_log_probs(self, model, ids, mask, position, P) -> torch.Tensor:
        """log π(·|x, y_<t) [n, R, V] in float32 at the response positions (the sampling processing)."""
        with self._amp():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position,
                           use_cache=False).logits[:, P - 1:-1]
        return self.game.sampling.log_softmax(logits, ids, P - mask[:, :P].sum(1), P)

    def _picked(self, model, contexts, responses) -> torch.Tensor:
        """log π(y_t|x, y_<t) [n, R], 0 past each response's end."""
        ids, mask, position, P = self._inputs(contexts, responses)
        picked = self._token_log_probs(model, ids, mask, position, P).gather(-1, ids[:, P:, None])[..., 0]
        # masked with where, not a product: a padded position may hold -inf under a truncating setting
        return torch.where(mask[:, P:].bool(), picked, 0.0)

    def _sequence_log_prob(self, model, contexts, responses) -> torch.Tensor:
        return self._picked(model, contexts, responses).sum(1)

    def _chunks(self, n: int) -> list[slice]:
        size = self.micro_batch_size or max(n, 1)
        return [slice(start, start + size) for start in range(0, n, size)]

    def _chunked(self, model, contexts, responses, method=None) -> torch.Tensor:
        """``method`` (default :meth:`_sequence_log_prob`) over the micro-batches, stacked (:func:`_concat_rows`)."""
        method = method or self._sequence_log_prob
        return _concat_rows([method(model, contexts[rows], responses[rows]) for rows in self._chunks(len(contexts))])

    def _with_gradient(self, method, contexts, responses) -> torch.Tensor:
        """``method`` under π_θ: one forward pass, or with ``micro_batch_size`` one per micro-batch and the
        whole batch's gradient (:class:`_MicroBatched`)."""
        if not torch.is_grad_enabled() or not self.micro_batch_size or len(contexts) <= self.micro_batch_size:
            return self._chunked(self._grad_model(), contexts, responses, method)
        return _MicroBatched.apply(self._anchor, self, method, contexts, responses)

    # ------------------------------------------------------------------ the policy interface
    def log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_θ(y|x) [n] for prompt indices and response handles (by micro-batches where set)."""
        return self._with_gradient(self._sequence_log_prob, contexts, responses)

    def ref_log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_ref(y|x) [n] under the frozen initial model (no gradient; by micro-batches).

        Raises:
            ValueError: a response π_ref cannot sample under the game's truncating settings
                (log π_ref = −∞: every loss term anchored on π_ref would be infinite or NaN).
        """
        with torch.no_grad():
            out = self._chunked(self._ref.value, contexts, responses)
        if torch.isneginf(out).any():
            settings = {"top_p": self.game.top_p, **self.game.sampling.settings}
            raise ValueError(f"a response lies outside pi_ref's support under the sampling settings {settings} "
                             "(log pi_ref = -inf): its KL to pi_ref is infinite. Train without the KL anchor "
                             "(beta=0) or without truncating settings (top_p, top_k, min_p...)")
        return out

    def token_log_probs(self, contexts: torch.Tensor, responses: torch.Tensor, reference: bool = False):
        """log π_θ(y_t|x, y_<t) [n, R] at each response position (π_ref's with ``reference``, without
        gradient), 0 past each response's end, and the response mask [n, R] (bool): the per-token terms of
        GRPO's losses (by micro-batches where set, with the whole batch's gradient); each row sums to
        :meth:`log_prob`."""
        if reference:
            with torch.no_grad():
                picked = self._chunked(self._ref.value, contexts, responses, self._picked)
            if torch.isneginf(picked).any():
                self.ref_log_prob(contexts, responses)  # raises, naming the truncating settings
        else:
            picked = self._with_gradient(self._picked, contexts, responses)
        lengths = torch.as_tensor([len(self.game.store.tokens[h]) for h in responses.tolist()], device=picked.device)
        return picked, torch.arange(picked.shape[1], device=picked.device) < lengths[:, None]

    @torch.no_grad()
    def token_kl(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """Σ_t KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t)) over each response's positions, [n], both under the
        game's sampling processing (a token π_θ gives no mass adds 0; one only π_ref excludes, +∞):
        for y ~ π_θ an unbiased estimate of KL(π_θ‖π_ref) (the chain rule) whose
        every term is ≥ 0, unlike the sequence log-ratio log π_θ(y) − log π_ref(y) (on the built-in
        model after 10 WIND iterations their standard errors were the same: 0.58 and 0.56 over 120
        held-out samples). By micro-batches."""
        return self._chunked(None, contexts, responses, self._token_kl)

    def _token_kl(self, _, contexts, responses) -> torch.Tensor:
        ids, mask, position, P = self._inputs(contexts, responses)
        log_p, log_ref = (self._token_log_probs(model, ids, mask, position, P)
                          for model in (self.model, self._ref.value))
        terms = torch.where(log_p > -torch.inf, log_p.exp() * (log_p - log_ref), 0.0).sum(-1)
        return torch.where(mask[:, P:].bool(), terms, 0.0).sum(1)

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One response handle per prompt index, sampled with the caller's numpy generator."""
        return self.game.generate(self.model, contexts, rng, device=self.device, amp_dtype=self.amp_dtype)

    @torch.no_grad()
    def sample_mixture(self, contexts: np.ndarray, rng: np.random.Generator, ref_weight: float) -> np.ndarray:
        """Response handles from the token-level geometric mixture (Nash-MD's practical opponent):
        each token from softmax((1−w)·log π_θ(·|x,y_<t) + w·log π_ref(·|x,y_<t)), w = ``ref_weight``,
        both at the game's temperature (the other sampling settings are not applied: the mixture is
        an opponent, never scored). Both models run incrementally
        with their KV caches; the inverse-CDF uniforms come from ``rng``."""
        game = self.game
        T, pad, eos = game.max_new_tokens, game.tokenizer.pad_token_id, game.tokenizer.eos_token_id
        prompts = [game.prompt_ids[x] for x in np.asarray(contexts)]
        P = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), P), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, P - len(p):], mask[i, P - len(p):] = torch.as_tensor(p), 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        uniforms = torch.as_tensor(rng.random((len(prompts), T)), dtype=torch.float32, device=self.device)
        models, caches = (self.model, self._ref.value), [None, None]
        # the KV-cache argument: ``cache`` from transformers 5.x on, ``past_key_values`` before
        cache_arg = "cache" if "cache" in inspect.signature(self._ref.value.forward).parameters else "past_key_values"
        tokens = torch.full((len(prompts), T), pad, dtype=torch.long, device=self.device)
        alive = torch.ones(len(prompts), dtype=torch.bool, device=self.device)
        step_ids, lengths = ids, torch.zeros(len(prompts), dtype=torch.long, device=self.device)
        for t in range(T):
            position = (mask.cumsum(1) - 1).clamp(min=0)[:, -step_ids.shape[1]:]
            mixed = 0.0
            with self._amp():
                for k, (model, weight) in enumerate(zip(models, (1 - ref_weight, ref_weight), strict=True)):
                    out = model(input_ids=step_ids, attention_mask=mask, position_ids=position, use_cache=True,
                                **{cache_arg: caches[k]})
                    caches[k] = out.past_key_values
                    mixed = mixed + weight * torch.log_softmax(out.logits[:, -1].float() / game.temperature, -1)
            cdf = torch.softmax(mixed, -1).cumsum(-1)
            drawn = (uniforms[:, t:t + 1] * cdf[:, -1:] > cdf).sum(-1).clamp(max=cdf.shape[-1] - 1)
            tokens[:, t] = torch.where(alive, drawn, torch.full_like(drawn, pad))
            lengths += alive.long()
            alive = alive & (drawn != eos)
            if not alive.any():
                break
            step_ids = tokens[:, t:t + 1]
            mask = torch.cat([mask, torch.ones_like(step_ids)], dim=1)
        rows = tokens.cpu().numpy()
        return game.store.add([row[:n] for row, n in zip(rows, lengths.cpu().numpy(), strict=True)])

    def probs(self) -> np.ndarray:
        raise ValueError("an LM policy has no table (its responses, all token sequences, are not listed): probs() "
                         "and policy_probs() exist only on games whose responses are listed; LMGame.evaluate "
                         "estimates its metrics from samples")

    log_probs = probs

    # ------------------------------------------------------------------ export
    def export(self, run_dir: str | os.PathLike) -> list[Path]:
        """Write the final artifact into ``run_dir``: ``hf_policy/``, a plain Hugging Face model folder
        (LoRA adapters merged into a copy) plus the tokenizer, which loads with
        ``AutoModelForCausalLM.from_pretrained`` alone; and ``generations.txt``, sample generations on
        held-out prompts (fixed seed, also printed). Returns the paths written."""
        folder, text = Path(run_dir) / "hf_policy", Path(run_dir) / "generations.txt"
        model = self.model
        if hasattr(model, "merge_and_unload"):
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(folder)
        self.game.tokenizer.save_pretrained(folder)
        lines = self.game.show_generations(self)
        text.write_text("\n".join(lines) + "\n")
        print("sample generations after training:\n  " + "\n  ".join(lines), file=sys.stderr, flush=True)
        return [folder, text]
