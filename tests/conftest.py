"""Shared fixtures. Nothing here downloads: hubs are forced offline for the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

from petool_lib.core.data import Entry, find_test_file, load_test_set  # noqa: E402


@pytest.fixture(scope="session")
def official_path() -> str:
    """The official test file (../shared/petoolbench or PETOOLBENCH_DIR); tests needing it skip elsewhere."""
    try:
        return str(find_test_file(allow_download=False))
    except FileNotFoundError:
        pytest.skip("official PEToolBench test set not available (set PETOOLBENCH_DIR)")


@pytest.fixture(scope="session")
def official(official_path: str) -> list[Entry]:
    return load_test_set(official_path)
