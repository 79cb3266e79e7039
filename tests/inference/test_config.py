"""Decoding and evaluation configuration: stable cache keys, profiles -> EvalConfig, the prompt budget."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from petool_lib.inference.config import DecodeConfig, EvalConfig, parse_modes

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_decode_key_per_mode_is_unchanged():
    """These dicts are part of every prediction-cache key: existing caches stay valid only while they stay."""
    cfg = DecodeConfig(grammar="builtin")
    assert cfg.key("generate") == {"max_new_tokens": 128}
    assert cfg.key("constrained") == {"max_value_chars": 128, "max_number_chars": 20}
    assert cfg.key("rank") == {"max_value_chars": 128, "max_number_chars": 20, "rank_score": "sum"}


def test_grammar_option_is_keyed_only_when_not_the_builtin_one():
    x = DecodeConfig()  # xgrammar by default: its predictions are not the built-in grammar's cached ones
    assert x.grammar == "xgrammar"
    assert x.key("constrained") == {"max_value_chars": 128, "max_number_chars": 20, "grammar": "xgrammar"}
    assert x.key("rank")["grammar"] == "xgrammar" and x.key("generate") == {"max_new_tokens": 128}
    assert EvalConfig.from_profile({"eval_grammar": "builtin"}).decode.grammar == "builtin"
    with pytest.raises(ValueError, match="unknown grammar"):
        DecodeConfig(grammar="outlines")


@pytest.mark.parametrize("name,modes,budget,chars,context", [
    ("tiny", ("rank",), 1024, 8, "evidence"), ("cpu", ("rank",), 2048, 48, "compact"),
    ("cpu-long", ("rank",), 2048, 48, "compact"), ("paper", ("generate", "rank"), None, 128, "evidence"),
])
def test_from_profile_reads_the_eval_keys(name, modes, budget, chars, context):
    import yaml

    params = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    cfg = EvalConfig.from_profile(params)
    assert cfg.modes == modes and cfg.max_prompt_tokens == budget and cfg.decode.max_value_chars == chars
    assert cfg.dtype == params["eval_dtype"] and cfg.context == context
    assert cfg.decode.max_new_tokens == DecodeConfig().max_new_tokens  # keys no profile sets keep their defaults


def test_from_profile_defaults_and_ignores_other_keys():
    assert EvalConfig.from_profile({}) == EvalConfig()
    cfg = EvalConfig.from_profile({"eval_modes": "generate, constrained", "eval_limit": 3, "model": "tiny",
                                   "eval_openai_model": None, "eval_max_prompt_tokens": None})
    assert cfg.modes == ("generate", "constrained") and cfg.max_prompt_tokens is None
    with pytest.raises(ValueError, match="unknown mode"):
        EvalConfig.from_profile({"eval_modes": "rank,beam"})
    with pytest.raises(ValueError, match="context"):
        EvalConfig.from_profile({"eval_context": "newest"})
    assert EvalConfig.from_profile({"eval_context": "oldest"}).context == "oldest"


def test_modes_validation_and_with_modes():
    assert parse_modes(["rank", " generate "]) == ("rank", "generate")
    with pytest.raises(ValueError, match="no mode"):
        parse_modes(" , ")
    with pytest.raises(ValueError, match="max_prompt_tokens"):
        EvalConfig(max_prompt_tokens=0)
    cfg = EvalConfig(modes="rank", max_prompt_tokens=900)
    endpoint = cfg.with_modes("generate")
    assert endpoint.modes == ("generate",) and endpoint.max_prompt_tokens == 900 and cfg.modes == ("rank",)
    with pytest.raises(FrozenInstanceError):
        cfg.modes = ("generate",)  # type: ignore[misc]


def test_prompt_budget():
    assert EvalConfig(max_prompt_tokens=1536).prompt_budget(8192) == 1536
    assert EvalConfig().prompt_budget(8192) == 8192 - 256  # the window minus the answer reserve
    assert EvalConfig(decode=DecodeConfig(max_new_tokens=512)).prompt_budget(8192) == 8192 - 512
    assert EvalConfig().prompt_budget(None) is None  # an endpoint: no budget unless one is set


def test_device_map_option():
    assert EvalConfig().device_map is None  # default: the model on one device, as before
    assert EvalConfig.from_profile({"eval_device_map": "auto"}).device_map == "auto"
    assert EvalConfig.from_profile({"eval_device_map": "none"}).device_map is None
    with pytest.raises(ValueError, match="unknown device_map"):
        EvalConfig(device_map="sequential")
