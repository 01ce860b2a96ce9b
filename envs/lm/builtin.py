"""The built-in language model: a word-level tokenizer and a tiny GPT-2, made in code.

Nothing is downloaded. The tokenizer (``tokenizers`` WordLevel over :data:`VOCABULARY`, a few
hundred English words with sentiment words of both polarities) and a 2-layer GPT-2
(``transformers.GPT2Config``) pre-trained for a few seconds on a synthetic corpus of short
review-like sentences (:func:`corpus`, half positive, half negative) are saved with
``save_pretrained`` into a cache folder, and then loaded back like any user's model:
``AutoModelForCausalLM.from_pretrained(path)`` and ``AutoTokenizer.from_pretrained(path)``.

The tokenizer carries a small chat template (:data:`CHAT_TEMPLATE`), so conversational prompts
work offline. The folder is ``$PREFZOO_CACHE/builtin-lm-v3`` (default ``~/.cache/prefzoo``), keyed by
:data:`VERSION`, written atomically (built in a temporary folder, then renamed), so concurrent
processes never see half a model (and build it once, under a file lock).

Building is seeded and pre-trains on one torch thread, in float32, with torch's deterministic
algorithms on (the caller's thread count, default dtype and deterministic setting are restored
afterwards): the weights are bit-identical whatever thread count the process has (checked in
the tests with 1 and 2 threads). Bit-identity is not promised across CPU instruction sets
(torch picks AVX2, AVX-512 or other kernels at run time, which round differently) nor across
torch / transformers versions; there the weights, and every number measured with them, agree
only to within the spread over seeds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

VERSION = "builtin-lm-v3"  # v3: v2's weights, a chat template in the tokenizer; v2: pre-trained on one thread
# (v1 depended on the thread count)
PAD, BOS_EOS, UNK = "<pad>", "<|endoftext|>", "<unk>"

POSITIVE = ("good great excellent amazing wonderful fantastic lovely perfect superb brilliant delightful pleasant "
            "enjoyable beautiful awesome nice charming impressive outstanding fun happy friendly helpful "
            "comfortable clean sweet cool glad fabulous terrific marvelous elegant exciting fresh").split()
NEGATIVE = ("bad terrible awful horrible poor boring disappointing dull ugly nasty broken useless annoying "
            "mediocre sad rude dirty weak bland stale painful frustrating lousy pathetic messy gross unpleasant "
            "uncomfortable noisy slow cheap worse worst").split()
NOUNS = ("movie film book phone food pizza coffee hotel room service staff restaurant camera laptop game song "
         "album show story plot ending actor music price battery screen car bike shoes shirt chair bed meal soup "
         "cake tea wine app website class teacher trip city park beach weather place store product package "
         "delivery team kitchen menu bread salad burger pasta sauce dessert view seat flight train bus ticket "
         "headphones keyboard speaker watch jacket bag lamp sofa garden museum concert museum series episode "
         "novel author director singer band waiter manager hostess owner").split()
ADVERBS = "very really quite so too pretty truly extremely rather totally absolutely fairly".split()
FUNCTION = ("the a this that it was is were are and but so not i we they my our you it's its "
            "would will again at of for in with to on overall honestly also just never always sometimes "
            "feels looks tastes sounds works seems felt looked tasted sounded worked seemed one experience "
            "thing time day night everything nothing service here there".split())
VERBS_POS = "love loved like liked enjoy enjoyed recommend recommended adore adored".split()
VERBS_NEG = "hate hated dislike disliked regret regretted avoid avoided".split()
VERBS = "bought watched read tried used ate ordered visited got had".split()
PUNCT = [".", ",", "!"]
VOCABULARY = tuple(dict.fromkeys([PAD, BOS_EOS, UNK, *PUNCT, *FUNCTION, *ADVERBS, *VERBS, *VERBS_POS, *VERBS_NEG,
                                  *NOUNS, *POSITIVE, *NEGATIVE]))
LINKS = ("was", "is", "looks", "feels", "seems", "tastes", "sounds", "looked", "felt", "seemed")
# prompt prefixes: {n} a noun; each also opens a corpus sentence
PROMPT_TEMPLATES = ("the {n} was", "this {n} is", "i bought this {n} and it", "overall the {n}", "honestly the {n}",
                    "i tried the {n} and", "the {n} looks", "our {n} felt", "we visited the {n} and it was",
                    "my {n} is")

# The model knows no roles: a conversation is BOS, then each message's content, an assistant turn
# closed by EOS (as the corpus closes a sentence); the generation prompt adds nothing. A one-message
# conversation thus gives the token ids of its text as a plain prompt.
CHAT_TEMPLATE = ("{{ bos_token }}{% for message in messages %} {{ message['content'] }}"
                 "{% if message['role'] == 'assistant' %} {{ eos_token }}{% endif %}{% endfor %}")
CONTEXT = 48  # n_positions of the built-in model (prompt + response tokens)
CORPUS_SIZE = 3000
PRETRAIN_STEPS = 150
SEED = 0


def _sentence(rng: np.random.Generator, positive: bool) -> str:
    """One review-like sentence whose sentiment words all have one polarity."""
    adj = POSITIVE if positive else NEGATIVE
    verb = VERBS_POS if positive else VERBS_NEG
    n, n2 = rng.choice(NOUNS, 2)
    a, a2 = rng.choice(adj, 2)
    adv = rng.choice(ADVERBS)
    link = rng.choice(LINKS)
    bang = "!" if rng.random() < 0.3 else "."
    forms = (f"the {n} was {adv} {a} {bang}",
             f"this {n} is {a} and {a2} {bang}",
             f"i bought this {n} and it {link} {adv} {a} {bang}",
             f"overall the {n} {link} {a} , i {rng.choice(verb)} it {bang}",
             f"honestly the {n} {link} {a} and the {n2} {link} {a2} {bang}",
             f"i tried the {n} and it {link} {a} {bang}",
             f"the {n} looks {adv} {a} {bang}",
             f"our {n} felt {a} , the {n2} was {adv} {a2} {bang}",
             f"we visited the {n} and it was {a} {bang}",
             f"my {n} is {adv} {a} , i {rng.choice(verb)} it {bang}",
             f"i {rng.choice(verb)} the {n} {bang}",
             f"{a} {n} , {adv} {a2} {n2} {bang}")
    return forms[rng.integers(len(forms))]


def corpus(size: int = CORPUS_SIZE, seed: int = SEED) -> list[str]:
    """``size`` synthetic review sentences, polarity drawn 50/50 (seeded)."""
    rng = np.random.default_rng(seed)
    return [_sentence(rng, bool(rng.random() < 0.5)) for _ in range(size)]


def default_prompts() -> list[str]:
    """The built-in prompts: every template with 12 nouns (120 prompts, fixed order)."""
    nouns = ("movie", "book", "phone", "pizza", "hotel", "coffee", "camera", "song", "restaurant", "laptop",
             "concert", "salad")
    return [template.format(n=noun) for noun in nouns for template in PROMPT_TEMPLATES]


def build_tokenizer():
    """A ``PreTrainedTokenizerFast`` over :data:`VOCABULARY` (word level, whitespace and
    punctuation split, unknown words → ``<unk>``), with pad, BOS = EOS and unk tokens set and
    :data:`CHAT_TEMPLATE`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {word: i for i, word in enumerate(VOCABULARY)}
    core = Tokenizer(models.WordLevel(words, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token=BOS_EOS, eos_token=BOS_EOS, pad_token=PAD,
                                   unk_token=UNK, model_max_length=CONTEXT, chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, steps: int = PRETRAIN_STEPS, seed: int = SEED):
    """The tiny GPT-2 pre-trained on :func:`corpus` (next-token cross-entropy, Adam, seeded), on one
    torch thread in float32 with deterministic algorithms, so the weights do not depend on the
    caller's thread count (its settings are restored, also on error)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=len(tokenizer), n_positions=CONTEXT, n_embd=64, n_layer=2, n_head=4,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    texts = [f"{BOS_EOS} {s} {BOS_EOS}" for s in corpus(seed=seed)]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    labels = ids.masked_fill(mask == 0, -100)
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    deterministic, warn_only = torch.are_deterministic_algorithms_enabled(), \
        torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_num_threads(1)  # reductions split over threads sum in another order
        torch.set_default_dtype(torch.float32)
        torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = GPT2LMHeadModel(config)
            optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
            order = torch.randperm(len(ids))
            for step in range(steps):
                rows = order[(step * 64 + torch.arange(64)) % len(ids)]
                loss = model(input_ids=ids[rows], attention_mask=mask[rows], labels=labels[rows]).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def cache_root() -> Path:
    return Path(os.environ.get("PREFZOO_CACHE") or Path.home() / ".cache" / "prefzoo")


def builtin_model_path() -> Path:
    """The folder of the built-in model (built and saved on first use): pass it to
    ``from_pretrained`` like any model folder."""
    path = cache_root() / VERSION
    if (path / "config.json").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f"{VERSION}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent processes (pytest-xdist workers) build it once
        if not (path / "config.json").is_file():
            _build_into(path)
    return path


def _build_into(path: Path) -> None:
    """Build the tokenizer and the model in a temporary folder, then rename it to ``path``."""
    tmp = Path(tempfile.mkdtemp(prefix=f"{VERSION}.tmp", dir=path.parent))
    try:
        tokenizer = build_tokenizer()
        build_model(tokenizer).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
