"""Fixtures for tests/zoo (helpers live in zoo_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from zoo_helpers import FAILING_SPPO, TINY, sweep


@pytest.fixture(scope="session")
def tiny_configs(tmp_path_factory) -> Path:
    """A config folder whose wind.yml trains a 3×3 game in about a second."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / "wind.yml").write_text(TINY)
    return folder


@pytest.fixture(scope="session")
def sweep_configs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sweep_configs")
    (folder / "wind.yml").write_text(TINY)
    (folder / "sppo.yml").write_text(FAILING_SPPO)
    return folder


@pytest.fixture(scope="session")
def reference_sweep(sweep_configs, tmp_path_factory) -> tuple[Path, dict]:
    """The uninterrupted local sweep that the killed and the Ray sweeps must reproduce (one per
    session: the modules that use it share an xdist group)."""
    out = tmp_path_factory.mktemp("reference_sweep")
    return out, sweep(out, sweep_configs)
