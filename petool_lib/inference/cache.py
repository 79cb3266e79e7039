"""A resumable prediction cache: append-only JSONL keyed by what a prediction depends on.

The key is a sha256 over the predictor's identity (:meth:`~petool_lib.inference.base.Predictor.identity`: the
model fingerprint from its config and weight files, never the model name alone; the adapter's content hash), the
prompt's hash (token ids the model sees, or the messages), the candidate tools, the decoding parameters and the
mode. Rows are appended and flushed one batch at a time, so an interrupted run loses at most the batch in flight;
a torn last line is ignored on reload.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..core.io import dumps_jsonl

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt", ".pth")
_CHUNK = 1 << 20


def _sha_file(path: Path, h: "hashlib._Hash", head_tail_only: bool) -> None:
    size = path.stat().st_size
    h.update(f"{path.name}:{size}".encode())
    with open(path, "rb") as fh:
        if not head_tail_only or size <= 8 * _CHUNK:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                h.update(block)
            return
        h.update(fh.read(4 * _CHUNK))  # safetensors header (names, shapes, offsets) + first tensors
        fh.seek(size - 4 * _CHUNK)
        h.update(fh.read(4 * _CHUNK))


def model_fingerprint(path_or_name: str) -> str:
    """Fingerprint of a model directory: its config plus every weight file (name, size, first and last 4 MiB).

    For a name that is not a local directory (a hub id loaded from the local HF cache) the config found in the
    cache snapshot is used when available, else the name with a ``name:`` marker (stated in the key).
    """
    p = Path(path_or_name)
    h = hashlib.sha256()
    if p.is_dir():
        cfg = p / "config.json"
        if cfg.is_file():
            h.update(cfg.read_bytes())
        for f in sorted(p.iterdir()):
            if f.is_file() and f.suffix in WEIGHT_SUFFIXES:
                _sha_file(f, h, head_tail_only=True)
        return "dir:" + h.hexdigest()
    try:
        from huggingface_hub import snapshot_download

        snap = Path(snapshot_download(path_or_name, local_files_only=True))
        return model_fingerprint(str(snap))
    except Exception:  # noqa: BLE001 - not in the local cache: only the name is known
        return "name:" + str(path_or_name)


def adapter_hash(path: str | os.PathLike[str]) -> str:
    """sha256 over every file of a PEFT adapter directory (relative names and full contents)."""
    p = Path(path)
    if not p.is_dir():
        raise FileNotFoundError(f"adapter directory not found: {p}")
    h = hashlib.sha256()
    for f in sorted(x for x in p.rglob("*") if x.is_file()):
        h.update(str(f.relative_to(p)).encode())
        _sha_file(f, h, head_tail_only=False)
    return h.hexdigest()


def cache_key(identity: dict[str, Any], prompt_digest: str, candidates_digest: str, mode: str,
              decoding: dict[str, Any]) -> str:
    payload = {"identity": identity, "prompt": prompt_digest, "candidates": candidates_digest, "mode": mode,
               "decoding": decoding}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class PredictionCache:
    """Append-only JSONL cache ``{"key": ..., "row": {...}}``; ``path=None`` keeps it in memory only."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self.rows: dict[str, dict[str, Any]] = {}
        if self.path and self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a torn line from an interrupted write
                    if isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("row"), dict):
                        self.rows[rec["key"]] = rec["row"]

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def put_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Store rows; append those without an ``error`` to the file in one flushed write.

        Rows carrying an error (a failed endpoint request) are kept in memory for this run only, so a later run
        tries them again instead of reusing the failure.
        """
        for k, row in items:
            self.rows[k] = row
        items = [(k, r) for k, r in items if not r.get("error")]
        if not self.path or not items:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = dumps_jsonl({"key": k, "row": r} for k, r in items)
        if self.path.is_file() and self.path.stat().st_size:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    text = "\n" + text  # never glue a new record onto a torn one
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
