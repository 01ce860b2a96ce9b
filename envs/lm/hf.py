"""Hugging Face pieces of the LM game: loading (offline-safe), batched generation, prompt
tokenization and a reward model as a score oracle.

torch and transformers are imported inside the functions (the ``[lm]`` extra), so importing this
module costs nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import urllib.parse
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..checks import check_int
from ..judges import ScoreOracle


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hugging Face hub may be asked: not offline (``HF_HUB_OFFLINE``) and its host
    accepts a connection within 3 s (checked once per process)."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        socket.create_connection((urllib.parse.urlparse(constants.ENDPOINT).hostname, 443), timeout=3).close()
    except OSError:
        return False
    return True


def load_pretrained(auto_cls, name: str, **kwargs):
    """``auto_cls.from_pretrained(name)`` with a clear error when ``name`` is neither a local
    folder nor loadable from the hub cache (nothing is downloaded when offline). A hub id is looked
    up in the local cache only when the hub cannot be reached (:func:`hub_reachable`), so that an
    offline machine answers at once instead of retrying the download."""
    path = Path(os.path.expanduser(str(name)))
    local = path.exists() or str(name).startswith((".", "/", "~")) or str(name).count("/") > 1
    if local and not path.is_dir():
        raise FileNotFoundError(f"model path {str(name)!r} does not exist (or is not a folder); give a folder "
                                f"written by save_pretrained, or a hub id (nothing is downloaded when offline)")
    if local and not any((path / f).is_file() for f in ("config.json", "tokenizer_config.json", "tokenizer.json")):
        raise FileNotFoundError(f"model folder {str(name)!r} holds no saved model or tokenizer (no config.json); "
                                "give a folder written by save_pretrained")
    offline = not local and not hub_reachable()
    try:
        return auto_cls.from_pretrained(str(path) if local else str(name), **kwargs,
                                        **({"local_files_only": True} if offline else {}))
    except OSError as err:
        where = "the hub is unreachable and it is not" if offline else "not"
        raise FileNotFoundError(f"cannot load {str(name)!r} with {auto_cls.__name__}: it is no local folder, and "
                                f"{where} in the Hugging Face cache (nothing is downloaded when offline): "
                                f"{err}") from err


def context_length(config) -> int | None:
    """The model's context in tokens (``max_position_embeddings`` or GPT-2's ``n_positions``), if it has one."""
    return getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)


def ensure_pad_token(tokenizer, owner: str = "the model"):
    """Give a tokenizer without a pad token its EOS (or UNK) as pad (e.g. GPT-2; masked everywhere).

    Raises:
        ValueError: the tokenizer has no pad, EOS or UNK token at all (batches could not be padded:
            refused here, not at the first generation or scoring).
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if tokenizer.pad_token_id is None:
        raise ValueError(f"the tokenizer of {owner} has no pad, EOS or UNK token to pad batches with; give it a "
                         "pad token (tokenizer.pad_token = ...)")
    return tokenizer


def tokenize_prompts(tokenizer, prompts: Sequence[str], context: int | None, max_new_tokens: int,
                     templated: Sequence[bool] | None = None) -> list[np.ndarray]:
    """Token ids per prompt (BOS first when the tokenizer does not add one; a ``templated`` prompt,
    rendered by a chat template, is tokenized without adding special tokens, as TRL does),
    left-truncated to ``context`` minus ``max_new_tokens`` tokens, with a warning.

    Raises:
        ValueError: ``max_new_tokens`` leaves no room for a prompt in the context.
    """
    limit = None if context is None else context - max_new_tokens
    if limit is not None and limit < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for a prompt in the model's "
                         f"context of {context} tokens")
    ids = []
    for text, chat in zip(prompts, templated or [False] * len(prompts), strict=True):
        row = tokenizer(text, add_special_tokens=not chat)["input_ids"]
        if not chat and tokenizer.bos_token_id is not None and (not row or row[0] != tokenizer.bos_token_id):
            row = [tokenizer.bos_token_id, *row]
        ids.append(np.asarray(row, dtype=np.int64))
    long = [i for i, row in enumerate(ids) if limit is not None and len(row) > limit]
    if long:
        warnings.warn(f"{len(long)} prompt(s) longer than the model's context of {context} tokens minus "
                      f"max_new_tokens={max_new_tokens} are truncated to their last {limit} tokens "
                      f"(e.g. {prompts[long[0]][:60]!r})", stacklevel=3)
        for i in long:
            ids[i] = ids[i][-limit:]
    return ids


# generation settings that do not change the distribution sampled from (the rest, e.g. a hub model's
# repetition_penalty or no_repeat_ngram_size, would make it differ from the one responses are scored under)
NEUTRAL_GENERATION_KEYS = {"bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id", "max_length",
                           "max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "use_cache",
                           "cache_implementation", "output_attentions", "output_hidden_states", "output_scores",
                           "output_logits", "return_dict_in_generate", "transformers_version", "_from_model_config"}


@contextlib.contextmanager
def sampling_config(model):
    """Within: ``model.generation_config`` holds only its token ids, so that ``generate`` samples
    exactly from the distribution that the policy's log-probabilities score (the game's
    :class:`~prefzoo.envs.lm.sampling.SamplingDistribution`, passed as ``logits_processor``); settings of the
    model's own generation config that would change that distribution are named in a warning
    (once per model) and ignored. The model's config is restored afterwards."""
    from transformers import GenerationConfig

    own = model.generation_config
    altering = {k: v for k, v in own.to_diff_dict().items() if k not in NEUTRAL_GENERATION_KEYS}
    if altering and not getattr(model, "_prefzoo_warned_generation", False):
        warnings.warn(f"the model's generation config sets {altering}: ignored, prefzoo samples from the "
                      "distribution that it scores (give such settings as LMGame(generation_kwargs=...): applied "
                      "in sampling and scoring alike)",
                      stacklevel=4)
        model._prefzoo_warned_generation = True
    model.generation_config = GenerationConfig(bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id,
                                               pad_token_id=own.pad_token_id)
    try:
        yield
    finally:
        model.generation_config = own


def generate(model, prompt_ids: Sequence[np.ndarray], rng: np.random.Generator, *, max_new_tokens: int,
             distribution, pad_id: int, eos_id: int, device, amp_dtype=None, batch_size: int = 256) -> list[np.ndarray]:
    """Sample one continuation per prompt with ``model.generate`` (KV cache, left padding) in
    batches, from ``distribution`` alone (a :class:`~prefzoo.envs.lm.sampling.SamplingDistribution`,
    whose processors are the only ones applied: :func:`sampling_config`), under autocast to
    ``amp_dtype`` where one is given; the torch sampling seed is drawn from ``rng``, so a run is
    reproducible on a device. Returns each response's token ids through its first EOS."""
    import torch

    seed = int(rng.integers(2**63 - 1))
    out: list[np.ndarray] = []
    device_type = torch.device(device).type
    devices = [device] if device_type == "cuda" else []
    amp = contextlib.nullcontext() if amp_dtype is None else torch.autocast(device_type, dtype=amp_dtype)
    with torch.random.fork_rng(devices=devices), torch.no_grad(), amp, sampling_config(model):
        torch.manual_seed(seed)
        for start in range(0, len(prompt_ids), batch_size):
            chunk = prompt_ids[start:start + batch_size]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(chunk):
                ids[i, width - len(p):], mask[i, width - len(p):] = torch.as_tensor(p), 1
            processor = distribution.generate_processor([width - len(p) for p in chunk])
            generated = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=True,
                                       max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
                                       logits_processor=processor, pad_token_id=pad_id,
                                       eos_token_id=eos_id)[:, width:].cpu().numpy()
            for row in generated:
                ends = np.flatnonzero(row == eos_id)
                out.append(row[:ends[0] + 1] if len(ends) else row)
    return out


class RewardModelOracle(ScoreOracle):
    """A sequence-classification reward model r(prompt, response) as a :class:`ScoreOracle`
    (Bradley–Terry P = σ((r_a − r_b)/T), cached per (prompt, response)), scoring its batches of new
    texts in forward passes of ``batch_size``.

    The text prompt + " " + response is **re-tokenized with the reward model's own tokenizer**
    (policy token ids never reach it), right-padded, and truncated to the model's context **from the
    left** with a warning: the prompt's start goes first, so the response is always scored (right
    truncation would cut the response once the prompt fills the context, and every response of that
    prompt would score the same). A tokenizer without a pad token gets its EOS (or UNK) as pad, and
    the model's ``pad_token_id`` is set to match, so batched scoring reads the last real token.

    Args:
        model: a folder or hub id (``AutoModelForSequenceClassification.from_pretrained``), or a
            loaded model (then ``tokenizer`` is required).
        tokenizer: a tokenizer, or a folder / hub id; default: ``model``'s own.
        temperature: T > 0.
        batch_size: texts per forward pass (>= 1).
        device: torch device of the reward model.
        label: the output read as the reward when the model has several (``num_labels`` > 1; e.g.
            the "positive" logit of a classifier); a one-output model needs none.

    Raises:
        TypeError, ValueError: a bad temperature or batch size, a loaded model without tokenizer, a
            model with several outputs and no ``label`` (the labels are named), or a tokenizer with
            no pad, EOS or UNK token to pad with (refused here, not at the first scoring).
        FileNotFoundError: a missing model folder (nothing is downloaded when offline).
    """

    def __init__(self, model, tokenizer=None, temperature: float = 1.0, batch_size: int = 32, device: str = "cpu",
                 label: int | None = None):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__(self._forward, temperature, include_prompt=True, name="reward_model", batched=True)
        batch_size = check_int("batch_size", batch_size, low=1)
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            name = str(model)
            tokenizer = tokenizer if tokenizer is not None else name
            model = load_pretrained(AutoModelForSequenceClassification, name)
        elif tokenizer is None:
            raise ValueError("a loaded reward model needs its tokenizer: RewardModelOracle(model, tokenizer=...)")
        else:
            name = getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.name = name
        if isinstance(tokenizer, (str, bytes)) or hasattr(tokenizer, "__fspath__"):
            tokenizer = load_pretrained(AutoTokenizer, str(tokenizer))
        outputs = model.config.num_labels
        if outputs > 1 and label is None:
            raise ValueError(f"reward model {name!r} has {outputs} outputs ({model.config.id2label}); pass label= the "
                             "index of the one to read as the reward")
        self.label = 0 if label is None else check_int("label", label, low=0, high=outputs - 1)
        model.config.pad_token_id = ensure_pad_token(tokenizer, f"reward model {name!r}").pad_token_id
        tokenizer.truncation_side = "left"  # keep the response (module docstring)
        self.model, self.tokenizer = model.to(device).eval().requires_grad_(False), tokenizer
        self.batch_size, self.device, self.max_length = batch_size, device, context_length(model.config)

    def _forward(self, texts: list[str]) -> list[float]:
        """The reward model's scores (logit ``label``) of ``texts``, in forward passes of ``batch_size``."""
        import torch

        if self.max_length is not None:
            longest = max(len(ids) for ids in self.tokenizer(texts)["input_ids"])
            if longest > self.max_length:
                warnings.warn(f"reward model {self.name!r}: a prompt + response of {longest} tokens is cut to its "
                              f"context of {self.max_length} from the left (the prompt's start is not scored)",
                              stacklevel=3)
        scores = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[start:start + self.batch_size], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt", padding_side="right")
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()}).logits
                scores.extend(logits[:, self.label].float().cpu().tolist())
        return scores
