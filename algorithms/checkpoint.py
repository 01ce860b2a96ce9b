"""The data-only checkpoint format: tensors and plain Python values, written atomically and read
back with ``torch.load(weights_only=True)``, so that loading a crafted file cannot run code.

:meth:`~prefzoo.algorithms.base.Algorithm.save` and ``load`` go through :func:`write_checkpoint`
and :func:`read_checkpoint`; numpy arrays travel as marked tensors (:func:`to_checkpoint_data`).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from typing import Any, Sequence

import numpy as np
import torch

from prefzoo.envs.checks import expanded_size

# data only (tensors and plain Python values), loaded with weights_only=True; 3: + the game's
# counters; 4: + the budget spent, the duel regrets by kind (weak, average, Copeland)
CHECKPOINT_FORMAT = 4
MAX_CHECKPOINT_NODES = 10**7  # containers and values once shared references are expanded (runs hold far fewer)
_NDARRAY = "__ndarray__"  # marks a numpy array stored as a tensor in a checkpoint


class CheckpointError(ValueError):
    """A file that is not a readable prefzoo checkpoint (empty, truncated, corrupted or foreign)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that holds objects other than tensors and plain data (it could run code when
    unpickled); it is refused, never unpickled."""


def to_checkpoint_data(value: Any) -> Any:
    """``value`` with every numpy array turned into a marked tensor and numpy scalars into Python
    ones, so that ``torch.load(weights_only=True)`` can read it back (:func:`from_checkpoint_data`)."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise TypeError("a checkpoint holds numeric arrays only, not object arrays")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(value).copy())}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {key: to_checkpoint_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_checkpoint_data(item) for item in value)
    return value


def _contents(value: Any) -> Sequence:
    """The items of a checkpoint container (none for a tensor or a scalar)."""
    if isinstance(value, dict):
        return list(value.values())
    return value if isinstance(value, (list, tuple)) else ()


def from_checkpoint_data(value: Any) -> Any:
    """Inverse of :func:`to_checkpoint_data`."""
    if isinstance(value, dict):
        if set(value) == {_NDARRAY}:
            return value[_NDARRAY].numpy().copy()
        return {key: from_checkpoint_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_checkpoint_data(item) for item in value)
    return value


def write_checkpoint(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """Write ``data`` (plain Python values, tensors and numpy arrays) to ``path`` as a checkpoint of
    format :data:`CHECKPOINT_FORMAT` (the ``"format"`` key is added), atomically: a temporary file,
    fsynced, then renamed over ``path``, so a reader never sees a half-written checkpoint."""
    path = os.fspath(path)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(to_checkpoint_data({"format": CHECKPOINT_FORMAT, **data}), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The data stored by :func:`write_checkpoint`, read with ``torch.load(weights_only=True)``:
    only tensors and plain Python data are unpickled, so a crafted file cannot run code.

    Raises:
        UnsafeCheckpointError: the file asks to unpickle anything else (refused, nothing ran).
        CheckpointError: an empty, truncated or corrupted file, not a prefzoo checkpoint, or one whose
            shared references would expand past :data:`MAX_CHECKPOINT_NODES` values (refused before
            anything is expanded).
    """
    path = os.fspath(path)
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a readable checkpoint (empty, truncated or not written by torch.save)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err) or "Weights only load failed" in str(err):
            raise UnsafeCheckpointError(
                f"{path} holds objects other than tensors and plain data (it could run code when loaded); "
                "refusing to load it. prefzoo checkpoints are data only") from None
        raise CheckpointError(f"{path} is not a readable checkpoint ({err})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path} is not a readable checkpoint (corrupted: {str(err).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a prefzoo checkpoint of format {CHECKPOINT_FORMAT} (found {found!r})")
    try:
        size = expanded_size(state, _contents)
    except ValueError:
        raise CheckpointError(f"{path}: a checkpoint container contains itself; refused") from None
    if size > MAX_CHECKPOINT_NODES:
        raise CheckpointError(f"{path} expands to {size:,} values through shared references (more than "
                              f"{MAX_CHECKPOINT_NODES:,}); refused before building it")
    return from_checkpoint_data(state)
