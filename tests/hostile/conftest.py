from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from .readonly import read_only_folder


@pytest.fixture
def read_only_dir() -> Iterator[Path]:
    """An empty read-only directory (see :mod:`tests.hostile.readonly`)."""
    yield from read_only_folder()
