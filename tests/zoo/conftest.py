"""Fixtures for tests/zoo (helpers live in zoo_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from zoo_helpers import TINY


@pytest.fixture(scope="session")
def tiny_configs(tmp_path_factory) -> Path:
    """A config folder whose wind.yml trains a 3×3 game in about a second."""
    folder = tmp_path_factory.mktemp("configs")
    (folder / "wind.yml").write_text(TINY)
    return folder
