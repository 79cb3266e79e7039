"""Fixtures shared by the synthesis tests: one LLM/embedding cache and one small sample run per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from petool_lib.synthesis.pipeline import Preparation, prepare, synthesize

from .helpers import synth_cfg


@pytest.fixture(scope="session")
def synth_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synth-cache")


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory: pytest.TempPathFactory, synth_cache: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("sample-run")
    manifest = synthesize(synth_cfg(out, synth_cache))
    return out, manifest


@pytest.fixture(scope="session")
def prep(tmp_path_factory: pytest.TempPathFactory, synth_cache: Path) -> Preparation:
    """Notebook 01's preparation of the same run as :func:`sample_run` (read-only in the tests)."""
    return prepare(synth_cfg(tmp_path_factory.mktemp("prep"), synth_cache))
