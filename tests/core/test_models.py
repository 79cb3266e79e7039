"""Model registry: the converted SmolLM2 / tiny directories end turns with <|im_end|>, like SmolLM2's HF release."""

import json
import shutil

from transformers import AutoTokenizer

from petool_lib.core.context import end_of_turn_ids
from petool_lib.core.models import _fix_special_tokens, resolve_model


def test_tiny_tokenizer_ends_turns_with_im_end():
    path = resolve_model("tiny")
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert tok.convert_ids_to_tokens(end_of_turn_ids(tok))[0] == "<|im_end|>"
    assert "<|im_start|>" not in tok.convert_ids_to_tokens(end_of_turn_ids(tok))
    assert json.loads(open(f"{path}/config.json").read())["eos_token_id"] == tok.eos_token_id


def test_caches_converted_before_the_fix_are_repaired(tmp_path):
    src = resolve_model("tiny")
    old = tmp_path / "old"
    old.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"):
        shutil.copy(f"{src}/{name}", old / name)
    start = AutoTokenizer.from_pretrained(src).convert_tokens_to_ids("<|im_start|>")
    for name, upd in (("tokenizer_config.json", {"eos_token": "<|im_start|>", "pad_token": "<|im_start|>",
                                                 "eos_token_id": start, "pad_token_id": start}),
                      ("config.json", {"eos_token_id": start, "pad_token_id": start})):
        data = json.loads((old / name).read_text()) | upd
        (old / name).write_text(json.dumps(data))
    assert AutoTokenizer.from_pretrained(old).eos_token == "<|im_start|>"
    _fix_special_tokens(old)
    tok = AutoTokenizer.from_pretrained(old)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert json.loads((old / "config.json").read_text())["eos_token_id"] == tok.eos_token_id


def test_inference_dtype_auto_uses_bf16_only_where_the_cpu_runs_it_natively(tmp_path, monkeypatch):
    import pytest
    import torch

    from petool_lib.core import models

    with_bf16 = tmp_path / "bf16"
    with_bf16.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n")
    without = tmp_path / "plain"
    without.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert models.cpu_has_native_bf16(with_bf16) and not models.cpu_has_native_bf16(without)
    assert not models.cpu_has_native_bf16(tmp_path / "missing")  # cannot tell: fp32

    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert models.inference_dtype("cpu", "auto") == torch.bfloat16
    assert models.inference_dtype("cpu", None) == torch.float32  # training / explicit loads keep fp32 on CPU
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    assert models.inference_dtype("cpu", "auto") == torch.float32
    assert models.inference_dtype("cuda", "auto") == torch.bfloat16
    assert models.inference_dtype("cpu", "float16") == torch.float16
    with pytest.raises(ValueError, match="unknown dtype 'fp33'"):
        models.inference_dtype("cpu", "fp33")
