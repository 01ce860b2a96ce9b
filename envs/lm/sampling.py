"""The distribution an LM game samples responses from, and scores them under.

:class:`SamplingDistribution` holds the game's generation settings as transformers' own logits
processors (``RepetitionPenaltyLogitsProcessor``, ``TopKLogitsWarper``, …, in the order
``model.generate`` builds them from a ``GenerationConfig``). The very same processors are handed to
``model.generate`` (its own generation config neutralized: :func:`~prefzoo.envs.lm.hf.sampling_config`)
and applied to the teacher-forced logits when a response is scored, so log π(y|x) is the sum of the
log-softmax of exactly the processed logits each token was drawn from. A processor that reads the
prefix (a repetition penalty, an n-gram block) is applied row by row to the row's own tokens, prompt
and response so far, never to padding, so a row's distribution does not depend on its batch. A setting
that cannot be scored this way is refused by name.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..checks import check_int, check_real

# generation_kwargs keys that are scored exactly, with their checks (name, value) -> value
PREFIX_SETTINGS = ("repetition_penalty", "no_repeat_ngram_size")  # read the prefix: applied row by row
WARPER_SETTINGS = ("top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff")  # read the scores only
OWN_KEYWORDS = ("temperature", "top_p", "max_new_tokens")  # the game's own keywords, one place each


def _check_setting(key: str, value: Any):
    name = f"generation_kwargs[{key!r}]"
    if key in ("top_k", "no_repeat_ngram_size"):
        return check_int(name, value, low=0)
    if key == "repetition_penalty":
        return check_real(name, value, 0.0, low_open=True)
    return check_real(name, value, 0.0, 1.0)


class SamplingDistribution:
    """π(·|prefix) = softmax(processed logits): the game's temperature and ``top_p`` and the
    ``generation_kwargs`` scored exactly (``repetition_penalty``, ``no_repeat_ngram_size``, ``top_k``,
    ``min_p``, ``typical_p``, ``epsilon_cutoff``, ``eta_cutoff``), as transformers' logits processors in
    ``model.generate``'s order: the prefix processors, then temperature, top-k, top-p, min-p, typical,
    ε and η. A truncating setting (``top_k``, ``top_p``, ``min_p``…) gives log π(y|x) = −∞ to a
    response outside the truncated support (e.g. π_ref's, for a response of a trained policy): the KL
    is then truly infinite.

    Raises:
        TypeError, ValueError: ``generation_kwargs`` that is not a mapping, a bad value (named), a
            key with its own game keyword, or a setting that cannot be scored as it samples (named,
            with the accepted keys).
    """

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0, generation_kwargs: dict | None = None):
        from transformers import (
            EpsilonLogitsWarper,
            EtaLogitsWarper,
            MinPLogitsWarper,
            NoRepeatNGramLogitsProcessor,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
            TypicalLogitsWarper,
        )

        if generation_kwargs is not None and not isinstance(generation_kwargs, dict):
            raise TypeError(f"generation_kwargs must be a mapping of generation settings, got {generation_kwargs!r}")
        settings = dict(generation_kwargs or {})
        for key in settings:
            if key in OWN_KEYWORDS:
                raise ValueError(f"generation_kwargs[{key!r}]: give {key}= itself (a game keyword), not in "
                                 "generation_kwargs")
            if key not in PREFIX_SETTINGS + WARPER_SETTINGS:
                raise ValueError(f"generation_kwargs[{key!r}] cannot be scored teacher-forced under the distribution "
                                 f"it samples from, so it is refused; accepted: {PREFIX_SETTINGS + WARPER_SETTINGS}")
        self.settings = {key: _check_setting(key, value) for key, value in settings.items()}
        get = self.settings.get
        prefix = [(get("repetition_penalty", 1.0) != 1.0, lambda: RepetitionPenaltyLogitsProcessor(
                       get("repetition_penalty"))),
                  (get("no_repeat_ngram_size", 0) > 0, lambda: NoRepeatNGramLogitsProcessor(
                       get("no_repeat_ngram_size")))]
        warpers = [(temperature != 1.0, lambda: TemperatureLogitsWarper(temperature)),
                   (get("top_k", 0) > 0, lambda: TopKLogitsWarper(get("top_k"))),
                   (top_p < 1.0, lambda: TopPLogitsWarper(top_p)),
                   ("min_p" in self.settings, lambda: MinPLogitsWarper(get("min_p"))),
                   (get("typical_p", 1.0) < 1.0, lambda: TypicalLogitsWarper(get("typical_p"))),
                   (0 < get("epsilon_cutoff", 0) < 1, lambda: EpsilonLogitsWarper(get("epsilon_cutoff"))),
                   (0 < get("eta_cutoff", 0) < 1, lambda: EtaLogitsWarper(get("eta_cutoff")))]
        self.prefix_processors = [make() for used, make in prefix if used]
        self.warpers = [make() for used, make in warpers if used]

    def process(self, scores, prefixes: Sequence | None = None):
        """Processed logits [n, V] (float32) from raw ``scores`` [n, V], ``prefixes`` the n rows' tokens
        before the position (1-D long tensors, no padding; read only by the prefix processors)."""
        import torch

        if self.prefix_processors:
            rows = []
            for prefix, row in zip(prefixes, scores.float(), strict=True):
                for processor in self.prefix_processors:
                    row = processor(prefix[None], row[None])[0]
                rows.append(row)
            scores = torch.stack(rows)
        empty = torch.empty((len(scores), 0), dtype=torch.long, device=scores.device)  # warpers read no prefix
        for warper in self.warpers:
            scores = warper(empty, scores)
        return scores.float()

    def log_softmax(self, logits, ids, starts, width: int):
        """log π(·|x, y_<t) [n, R, V] from teacher-forced ``logits`` [n, R, V] at the R response
        positions of ``ids`` [n, width + R] (row i's prompt starts at ``starts[i]`` after its left
        padding, its response at ``width``): the same processing as in sampling, in float32."""
        import torch

        n, R, V = logits.shape
        if not self.prefix_processors:
            return torch.log_softmax(self.process(logits.reshape(n * R, V).float()).reshape(n, R, V), dim=-1)
        starts = [int(s) for s in starts]
        columns = [self.process(logits[:, t], [ids[i, starts[i]:width + t] for i in range(n)]) for t in range(R)]
        return torch.log_softmax(torch.stack(columns, 1), dim=-1)

    def generate_processor(self, starts: Sequence[int]):
        """A ``LogitsProcessorList`` for ``model.generate`` on a left-padded batch whose row i's prompt
        starts at ``starts[i]``: :meth:`process` on each row's own prefix."""
        from transformers import LogitsProcessor, LogitsProcessorList

        distribution = self

        class Processed(LogitsProcessor):
            def __call__(self, input_ids, scores):
                return distribution.process(scores, [row[s:] for row, s in zip(input_ids, starts, strict=True)])

        return LogitsProcessorList([Processed()])
