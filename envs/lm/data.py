"""Prompt data of the LM game: rows with a ``prompt`` and any other columns, as TRL reads them.

A row is a dict ``{"prompt": p, **columns}``: ``p`` is plain text or a conversation (a list of
``{"role", "content"}`` messages, rendered with the tokenizer's chat template, generation prompt
added), and the other columns (e.g. a ground-truth ``answer``) reach the oracle or reward
functions with the prompt, as keyword arguments. Rows come from a list, a ``.txt`` / ``.jsonl``
file, a ``datasets.Dataset`` / ``IterableDataset``, a folder written by ``save_to_disk``, or a hub
dataset id (``datasets`` is imported only for the last three: extra ``[data]``).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Sequence

from .hf import hub_reachable

PROMPTS_ACCEPTED = ("a list of prompts, a .txt or .jsonl file, a datasets.Dataset or IterableDataset, a folder "
                    "written by Dataset.save_to_disk, or a hub dataset id")
HUB_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


def read_rows(prompts: Any, name: str = "prompts") -> list[dict]:
    """The rows of ``prompts`` (any of :data:`PROMPTS_ACCEPTED`; list items are prompts, or rows
    with a ``"prompt"`` key), each checked by :func:`check_row`.

    Raises:
        FileNotFoundError: a missing file or folder, or a hub id while the hub is unreachable.
        TypeError, ValueError: no rows, a row without a valid prompt, or an unreadable file.
        ImportError: a dataset source without the ``datasets`` package.
    """
    if isinstance(prompts, (str, os.PathLike)):
        rows, source = _read_path(prompts, name), f"{name}={str(prompts)!r}"
    elif _is_dataset(prompts):
        rows, source = _dataset_rows(prompts, name), name
    elif isinstance(prompts, Sequence):
        rows, source = [row if isinstance(row, dict) else {"prompt": row} for row in prompts], name
    else:
        raise TypeError(f"{name} must be {PROMPTS_ACCEPTED}, got {type(prompts).__name__}")
    if not rows:
        raise ValueError(f"{source} holds no prompts; expected at least one")
    for i, row in enumerate(rows):
        check_row(row, f"row {i} of {source}")
    return rows


def check_row(row: dict, where: str) -> None:
    """A row's ``prompt``: non-empty text, or a non-empty list of messages with string ``role`` and
    ``content``.

    Raises:
        ValueError: anything else (the message names ``where`` and shows the value).
    """
    if "prompt" not in row:
        raise ValueError(f"{where} has no 'prompt' (columns {sorted(row)}); expected a 'prompt' column")
    prompt = row["prompt"]
    if isinstance(prompt, str):
        if prompt.strip():
            return
    elif isinstance(prompt, (list, tuple)) and prompt and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in prompt):
        return
    raise ValueError(f"prompts must be non-empty strings or lists of chat messages {{'role': str, 'content': str}}, "
                     f"got {prompt!r} ({where})")


def _is_dataset(value: Any) -> bool:
    """Whether ``value`` is a ``datasets`` object (checked without importing ``datasets``)."""
    return type(value).__module__.split(".")[0] == "datasets"


def _read_path(prompts: str | os.PathLike, name: str) -> list[dict]:
    """Rows of a ``.txt`` file (one prompt per non-empty line), a ``.jsonl`` file (one row per
    line), a ``save_to_disk`` folder, or a hub dataset id (its ``train`` split)."""
    path = Path(os.path.expanduser(str(prompts)))
    if path.is_dir():
        datasets = _import_datasets(name)
        return _dataset_rows(datasets.load_from_disk(str(path)), name)
    if path.is_file():
        return _read_file(path)
    if path.suffix in (".txt", ".jsonl") or not HUB_ID.match(str(prompts)):
        raise FileNotFoundError(f"{name} file {str(path)!r} does not exist")
    if not hub_reachable():
        raise FileNotFoundError(f"{name}={str(prompts)!r} is no local file or dataset folder, and the hub dataset of "
                                "that id cannot be downloaded here (offline); save it with save_to_disk on a "
                                "machine that can, and pass that folder")
    return _dataset_rows(_import_datasets(name).load_dataset(str(prompts), split="train"), name)


def _read_file(path: Path) -> list[dict]:
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"prompts file {str(path)!r} is not a text file (not valid UTF-8)") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return [{"prompt": line} for line in lines]
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or "prompt" not in row:
            raise ValueError(f"{path}:{number}: expected a JSON object with a \"prompt\", got {line[:80]!r}")
        rows.append(row)
    return rows


def _dataset_rows(dataset, name: str) -> list[dict]:
    """The rows of a ``Dataset`` or ``IterableDataset`` (read to its end)."""
    datasets = _import_datasets(name)
    if isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"{name} is a dataset with splits {sorted(dataset)}; pass one split, e.g. dataset['train']")
    columns = dataset.column_names
    if columns is not None and "prompt" not in columns:
        raise ValueError(f"{name} dataset has no 'prompt' column (columns {columns}); expected a 'prompt' column "
                         "(rename yours with dataset.rename_column)")
    return [dict(row) for row in dataset]


def _import_datasets(name: str):
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"{name} from a dataset needs the datasets package: pip install 'prefzoo[data]'") from err
    return datasets


def columns_of(row: dict) -> dict:
    """A row's columns other than ``prompt`` (the keyword arguments of the oracle or reward functions)."""
    return {key: value for key, value in row.items() if key != "prompt"}


def render_prompt(tokenizer, prompt: str | Sequence[dict], owner: str) -> tuple[str, bool]:
    """(text, templated): plain text as is; a conversation rendered as TRL does,
    ``tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)``
    (templated: its special tokens are in the text, none are added when it is tokenized).

    Raises:
        ValueError: a conversation for a tokenizer without a chat template.
    """
    if isinstance(prompt, str):
        return prompt, False
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"prompts hold chat messages but the tokenizer of {owner} has no chat template; give "
                         "plain-text prompts, or set tokenizer.chat_template and save it with the model")
    return tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False), True
