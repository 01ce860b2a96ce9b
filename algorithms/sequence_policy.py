"""Autoregressive sequence policies for token games, with the bandit policies' interface.

On a token game (kind ``"token"`` or ``"answer"``: a :class:`~prefzoo.envs.token.TokenGame`, a
:class:`~prefzoo.envs.token.TokenOracle` or an answer game's traces) a "response" is a sequence index, so a sequence
policy exposes exactly the calls every loss uses (:class:`~prefzoo.algorithms.policies.BanditPolicy`):
``log_prob(contexts, responses) -> [n]`` (teacher-forced sum of the token log-probs, padding after
EOS masked), ``ref_log_prob(contexts, responses) -> [n]`` (log π_ref, a table lookup: π_ref is
enumerated once per game, also on a :class:`~prefzoo.envs.token.TokenOracle`), ``log_probs(contexts)
-> [n, S]`` (one batched pass over every sequence of the distinct contexts), ``probs() -> [X, S]``
(the exact enumerated distribution; losses that only sample never call these two), ``sample(contexts,
rng)`` (batched autoregressive sampling on the policy's device, mapped to sequence indices in
closed form) and the buffers ``log_ref`` [X, S] and ``features`` [X, d]. WIND, SPPO, iterative
BoN, J-BOND, Nash-MD/MP, online DPO/IPO and GRPO therefore run on tokens with their bandit loss
code. Policies: ``"gru"`` starts as a copy of π_ref's own GRU (π_θ = π_ref at init, as for the
bandit policies); ``"gru_bf16"`` is the same with bf16 autocast on CUDA (no-op on CPU); ``"hf"``
is a Hugging Face causal LM built from a tiny config in code (optional extra ``[hf]``).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from prefzoo.envs.oracle import PreferenceOracle
from prefzoo.envs.sequences import sequence_index
from prefzoo.envs.token_lm import masked_sequence_log_prob, sample_tokens, teacher_inputs


class SequencePolicy(nn.Module):
    """π_θ(y|x) = Π_t π_θ(y_t | x, y_<t) over the enumerated sequences of a token game.

    Subclasses provide the model through :meth:`_logits` (teacher forcing, [n, T, V]) and
    :meth:`_stepper` (incremental sampling). Everything runs on ``device``; only the sampled
    indices go back to numpy (the oracle's input).

    Args:
        game: the token game (its ``ref`` fills ``log_ref``).
        device: torch device of the model and buffers.
        autocast: bf16 autocast of the model's forward passes on CUDA (ignored on CPU); log-probs
            are summed in float32 either way.

    Raises:
        ValueError: ``game``'s responses are not token sequences (``game.responses != "tokens"``).
    """

    def __init__(self, game: PreferenceOracle, device: torch.device, autocast: bool = False):
        super().__init__()
        if game.responses != "tokens":
            raise ValueError(f"policy {type(self).__name__} needs a game whose responses are token sequences "
                             f"(responses='tokens', e.g. prefzoo/TokenGame-*), got responses={game.responses!r}; "
                             "use policy='tabular' or 'mlp' on games of indexed responses")
        if not game.listed:
            raise ValueError(f"policy {type(self).__name__} enumerates the game's token sequences, and "
                             f"{type(game).__name__}'s are not listed (on prefzoo/AnswerTokenGame-v0 use "
                             "policy='automaton' for exact metrics or 'gru' for a neural policy with estimated ones)")
        sequences = game.sequences
        self.vocab_size, self.max_length = sequences.vocab_size, sequences.max_length
        self.autocast = bool(autocast) and torch.device(device).type == "cuda"
        self.register_buffer("log_ref", torch.as_tensor(np.log(game.ref), dtype=torch.float32, device=device))
        self.register_buffer("features", torch.as_tensor(game.features, dtype=torch.float32, device=device))
        self.register_buffer("seq_tokens", torch.tensor(sequences.tokens, device=device))
        self.register_buffer("seq_steps", torch.tensor(sequences.steps, device=device))

    # ------------------------------------------------------------------ model hooks
    def _logits(self, contexts: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def _stepper(self, contexts: torch.Tensor):  # pragma: no cover
        """(step_fn(token, state) -> (logits [n, V], state), initial state, BOS id)."""
        raise NotImplementedError

    def _amp(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()

    # ------------------------------------------------------------------ the policy interface
    def log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_θ(y|x) for paired batches of context and sequence indices, [n]."""
        tokens = self.seq_tokens[responses]
        with self._amp():
            logits = self._logits(contexts, teacher_inputs(tokens, self.vocab_size))
        return masked_sequence_log_prob(logits, tokens, self.seq_steps[responses])

    def ref_log_prob(self, contexts: torch.Tensor, responses: torch.Tensor) -> torch.Tensor:
        """log π_ref(y|x) for paired batches, [n]: the game's enumerated π_ref (``log_ref``), so the
        regularization is the same for every model (the HF one included)."""
        return self.log_ref[contexts, responses]

    def log_probs(self, contexts: torch.Tensor) -> torch.Tensor:
        """log π_θ(·|x) over every sequence, [n, S]: one pass over the S sequences of each
        distinct context in ``contexts``."""
        unique, inverse = torch.unique(contexts, return_inverse=True)
        S = self.seq_tokens.shape[0]
        flat = self.log_prob(unique.repeat_interleave(S), torch.arange(S, device=contexts.device).repeat(len(unique)))
        return flat.reshape(len(unique), S)[inverse]

    @torch.no_grad()
    def probs(self) -> np.ndarray:
        """The exact enumerated policy [X, S] as float64 numpy (rows renormalized in float64)."""
        contexts = torch.arange(self.log_ref.shape[0], device=self.log_ref.device)
        p = self.log_probs(contexts).double().exp().cpu().numpy()
        return p / p.sum(axis=1, keepdims=True)

    def sample_tokens(self, contexts: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Token rows [n, L] (on the device) sampled autoregressively, uniforms from ``rng``."""
        contexts = torch.as_tensor(np.asarray(contexts), device=self.log_ref.device)
        uniforms = torch.as_tensor(rng.random((len(contexts), self.max_length)), dtype=torch.float32,
                                   device=self.log_ref.device)
        step_fn, state, bos = self._stepper(contexts)
        with self._amp():
            return sample_tokens(step_fn, state, len(contexts), self.max_length, self.vocab_size, uniforms, bos)

    def sample(self, contexts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One sequence index per context, drawn with the caller's numpy generator."""
        return sequence_index(self.sample_tokens(contexts, rng), self.vocab_size).cpu().numpy()


class GRUSequencePolicy(SequencePolicy):
    """The π_ref GRU (:class:`~prefzoo.envs.token.TokenLM`) as a trainable policy: a copy of
    ``game.ref_lm.build()``, so π_θ = π_ref at init (up to float32 rounding)."""

    def __init__(self, game: PreferenceOracle, device: torch.device, autocast: bool = False):
        super().__init__(game, device, autocast)
        self.model = game.ref_lm.build(device)
        # frozen π_ref model for the token-level mixture (a list: not a submodule, not trained)
        self._ref_model = [game.ref_lm.build(device).requires_grad_(False)]

    def _logits(self, contexts, inputs):
        return self.model(self.features[contexts], inputs)

    def _stepper(self, contexts, model=None):
        model = model or self.model
        prompt = self.features[contexts]
        return (lambda token, state: model.step(prompt, token, state)), model.initial_state(prompt), model.bos

    def sample_mixture(self, contexts: np.ndarray, rng: np.random.Generator, ref_weight: float) -> np.ndarray:
        """Sequence indices from the token-level geometric mixture π^μ: each token is drawn from
        softmax((1−w)·log π_θ(·|x,y_<t) + w·log π_ref(·|x,y_<t)), w = ``ref_weight`` (Nash-MD's
        ητ). This is the practical (per-token) mixture of Nash-MD; it differs from the exact
        sequence-level mixture ∝ π_θ^{1−w}·π_ref^w, whose normalizer is over whole sequences."""
        ref = self._ref_model[0]
        ctx = torch.as_tensor(np.asarray(contexts), device=self.log_ref.device)
        uniforms = torch.as_tensor(rng.random((len(ctx), self.max_length)), dtype=torch.float32,
                                   device=self.log_ref.device)
        pol_step, pol_state, bos = self._stepper(ctx)
        ref_step, ref_state, _ = self._stepper(ctx, ref)

        def step_fn(token, state):
            (lp, s1), (lr, s2) = pol_step(token, state[0]), ref_step(token, state[1])
            mix = (1 - ref_weight) * torch.log_softmax(lp.float(), -1) + ref_weight * torch.log_softmax(lr.float(), -1)
            return mix, (s1, s2)

        with self._amp():
            tokens = sample_tokens(step_fn, (pol_state, ref_state), len(ctx), self.max_length, self.vocab_size,
                                   uniforms, bos)
        return sequence_index(tokens, self.vocab_size).cpu().numpy()


class BF16GRUSequencePolicy(GRUSequencePolicy):
    """:class:`GRUSequencePolicy` with bf16 autocast on CUDA (identical on CPU)."""

    def __init__(self, game: PreferenceOracle, device: torch.device):
        super().__init__(game, device, autocast=True)


class HFSequencePolicy(SequencePolicy):
    """A Hugging Face causal LM (``AutoModelForCausalLM.from_config``) as the sequence policy.

    The config is a tiny GPT-2 built in code (no download). Its vocabulary is the V tokens, BOS
    (id V) and one id per prompt (V+1+x): the input is [prompt_x, BOS, y_1, …] and the logits
    are read over the first V ids. The model starts randomly initialized (not at π_ref);
    ``log_ref`` is still π_ref, so the algorithms' regularization is unchanged. Sampling
    recomputes the prefix each step (L is small; no KV cache).

    Raises:
        ImportError: transformers is not installed (``pip install prefzoo[hf]``).
    """

    def __init__(self, game: PreferenceOracle, device: torch.device, hidden: int = 32, layers: int = 2,
                 heads: int = 2, autocast: bool = False):
        super().__init__(game, device, autocast)
        try:
            from transformers import AutoModelForCausalLM, GPT2Config
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("policy='hf' needs transformers: pip install 'prefzoo[hf]'") from err
        config = GPT2Config(vocab_size=self.vocab_size + 1 + game.n_contexts, n_positions=self.max_length + 2,
                            n_embd=hidden, n_layer=layers, n_head=heads, bos_token_id=self.vocab_size,
                            eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        self.model = AutoModelForCausalLM.from_config(config).to(device)

    def _logits(self, contexts, inputs):
        prompt_ids = (self.vocab_size + 1 + contexts)[:, None]
        logits = self.model(input_ids=torch.cat([prompt_ids, inputs], dim=1)).logits
        return logits[:, 1:, : self.vocab_size]

    def _stepper(self, contexts):
        def step_fn(token, prefix):
            prefix = torch.cat([prefix, token[:, None]], dim=1)
            return self._logits(contexts, prefix)[:, -1], prefix

        empty = torch.zeros((len(contexts), 0), dtype=torch.long, device=contexts.device)
        return step_fn, empty, self.vocab_size


SEQUENCE_POLICIES = {"gru": GRUSequencePolicy, "gru_bf16": BF16GRUSequencePolicy, "hf": HFSequencePolicy}
