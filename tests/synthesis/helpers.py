"""Helpers shared by the synthesis tests."""

from __future__ import annotations

from pathlib import Path

from petool_lib.synthesis.catalog import Api
from petool_lib.synthesis.config import SynthConfig


def synth_cfg(out: Path, cache: Path, **kw) -> SynthConfig:
    """A small sample-catalog run (12 training, 6 test entries) with a shared LLM/embedding cache."""
    base = dict(tools="sample", out=str(out), train=12, test=6, seed=0, cache_dir=str(cache), progress=False)
    base.update(kw)
    return SynthConfig(**base)


def make_api(cat: str, tool: str, name: str, req: tuple[str, ...] = ()) -> Api:
    return Api(cat, tool, name, f"{name} description",
               required_parameters=[{"name": r, "type": "STRING", "description": "", "default": ""} for r in req])
