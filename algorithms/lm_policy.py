"""A Hugging Face causal LM as a sample-mode policy on :class:`~prefzoo.envs.lm.game.LMGame`.

It exposes the calls every loss uses (as :class:`~prefzoo.algorithms.policies.BanditPolicy` and
the sequence policies do), with responses as the game's int64 handles:
``sample(contexts, rng)`` (batched ``model.generate`` with the KV cache; the torch seed is drawn
from the numpy generator), ``log_prob(contexts, responses)`` (log π_θ(y|x): one teacher-forced
forward pass over [left-padded prompt, response]) and ``ref_log_prob`` (the same pass through a
frozen copy of the initial model, π_ref). The policy has no table: ``probs()`` and
``log_probs()`` raise. π_θ = π_ref at init (the same weights), dropout off (eval mode, so
log-probabilities are deterministic), bf16 autocast on CUDA, optional LoRA adapters (``peft``).
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


class LMPolicy(nn.Module):
    """π_θ(y|x) = Π_t softmax(logits_t / T)[y_t], T the game's sampling temperature.

    Args:
        game: the :class:`~prefzoo.envs.lm.game.LMGame` (model folder, prompts, response store,
            generation settings and ``lora_rank``).
        device: torch device of the policy and of its frozen π_ref copy.

    Raises:
        ValueError: ``game`` is not an LM game.
        ImportError: ``lora_rank`` > 0 without peft (``pip install 'prefzoo[lora]'``).
    """

    def __init__(self, game, device: torch.device):
        super().__init__()
        if getattr(game, "responses", None) != "text":
            raise ValueError(f"LMPolicy needs an LM game (prefzoo/LMGame-v0), got a {type(game).__name__}")
        from transformers import AutoModelForCausalLM

        from prefzoo.envs.lm.hf import load_pretrained

        self._game, self.device = Shared(game), torch.device(device)
        self.autocast = self.device.type == "cuda"
        model = load_pretrained(AutoModelForCausalLM, game.model_path).to(self.device).eval()
        # frozen π_ref (not a submodule: neither trained nor checkpointed, shared by snapshots)
        self._ref = Shared(copy.deepcopy(model).requires_grad_(False))
        if game.lora_rank:
            try:
                from peft import LoraConfig, get_peft_model
            except ImportError as err:  # pragma: no cover - depends on the environment
                raise ImportError("lora_rank > 0 needs peft: pip install 'prefzoo[lora]'") from err
            model = get_peft_model(model, LoraConfig(r=game.lora_rank, lora_alpha=2 * game.lora_rank,
                                                     target_modules="all-linear", lora_dropout=0.0))
        self.model = model
        self._batch_key, self._batch = None, None

    @property
    def game(self):
        return self._game.value

    def train(self, mode: bool = True):
        """Always eval mode (dropout off): the losses need deterministic log-probabilities."""
        return super().train(False)

    def _amp(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()

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

    def _sequence_log_prob(self, model, contexts, responses) -> torch.Tensor:
        ids, mask, position, P = self._inputs(contexts, responses)
        with self._amp():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=position).logits[:, P - 1:-1]
        log_p = torch.log_softmax(logits.float() / self.game.temperature, dim=-1)
        picked = log_p.gather(-1, ids[:, P:, None])[..., 0]
        return (picked * mask[:, P:]).sum(1)

    # ------------------------------------------------------------------ the policy interface
    def log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_θ(y|x) [n] for prompt indices and response handles (one forward pass)."""
        return self._sequence_log_prob(self.model, contexts, responses)

    def ref_log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_ref(y|x) [n] under the frozen initial model (one forward pass, no gradient)."""
        with torch.no_grad():
            return self._sequence_log_prob(self._ref.value, contexts, responses)

    @torch.no_grad()
    def token_kl(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """Σ_t KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t)) over each response's positions, [n], both at the
        game's temperature: for y ~ π_θ an unbiased estimate of KL(π_θ‖π_ref) (the chain rule) whose
        every term is ≥ 0, unlike the sequence log-ratio log π_θ(y) − log π_ref(y) (on the built-in
        model after 10 WIND iterations their standard errors were the same: 0.58 and 0.56 over 120
        held-out samples)."""
        ids, mask, position, P = self._inputs(contexts, responses)
        log_probs = []
        for model in (self.model, self._ref.value):
            with self._amp():
                logits = model(input_ids=ids, attention_mask=mask, position_ids=position).logits[:, P - 1:-1]
            log_probs.append(torch.log_softmax(logits.float() / self.game.temperature, dim=-1))
        log_p, log_ref = log_probs
        return ((log_p.exp() * (log_p - log_ref)).sum(-1) * mask[:, P:]).sum(1)

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One response handle per prompt index, sampled with the caller's numpy generator."""
        return self.game.generate(self.model, contexts, rng, device=self.device, autocast=self.autocast)

    @torch.no_grad()
    def sample_mixture(self, contexts: np.ndarray, rng: np.random.Generator, ref_weight: float) -> np.ndarray:
        """Response handles from the token-level geometric mixture (Nash-MD's practical opponent):
        each token from softmax((1−w)·log π_θ(·|x,y_<t) + w·log π_ref(·|x,y_<t)), w = ``ref_weight``,
        both at the game's temperature (``top_p`` is not applied). Both models run incrementally
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
