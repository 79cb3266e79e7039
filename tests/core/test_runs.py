"""The manifest's machine record: CPU model and flags, threads, kernel variables, dtypes, versions."""

import json

from petool_lib.core.runs import ISA_FLAGS, KERNEL_ENV, cpu_info, environment

XEON = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 hypervisor
"""


def test_cpu_info_reads_the_model_and_the_kernel_relevant_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(XEON)
    info = cpu_info(path)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["isa_flags"] == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16",
                                 "amx_int8"]  # in ISA_FLAGS order, non-kernel flags dropped
    assert set(info["isa_flags"]) <= set(ISA_FLAGS) and info["native_bf16"] is True and info["logical_cpus"] >= 1


def test_cpu_info_without_proc_cpuinfo(tmp_path):
    info = cpu_info(tmp_path / "missing")
    assert info["isa_flags"] == [] and info["native_bf16"] is False and isinstance(info["model"], str)


def test_environment_records_what_changes_the_numbers(tmp_path, monkeypatch):
    for name in KERNEL_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = tmp_path / "cpuinfo"
    path.write_text(XEON)
    env = json.loads(json.dumps(environment(path)))  # JSON-friendly
    assert env["cpu"]["model"].startswith("Intel")
    assert env["env"] == {"ONEDNN_MAX_CPU_ISA": "AVX2", "OMP_NUM_THREADS": "1"}
    assert env["dtype"] == {"embeddings": "float32", "lm_cpu_default": "bfloat16"}
    assert env["embeddings"]["fingerprint"] and env["embeddings"]["model"].endswith("all-MiniLM-L6-v2")
    assert env["torch"]["available"] and env["torch"]["threads"] >= 1 and env["torch"]["cpu_capability"]
    assert env["packages"]["numpy"] and "python" in env and "platform" in env
