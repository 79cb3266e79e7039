"""JSON / JSONL files, written atomically (a temp file beside the target, then one rename).

One place for the formats every stage reads and writes: a half-written file never replaces a good one, and a bad
line is an error that names the file and the line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable


class JsonlError(ValueError):
    """A JSONL line that is not valid JSON (the message names the file and line)."""


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temp file and a rename; creates the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = None, sort_keys: bool = False) -> Path:
    """``obj`` as JSON (UTF-8, non-ASCII kept), atomically."""
    return write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent, sort_keys=sort_keys) + "\n")


def dumps_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line (UTF-8, non-ASCII kept), atomically."""
    return write_text_atomic(path, dumps_jsonl(rows))


def read_json(path: str | os.PathLike[str]) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise JsonlError(f"{path}: not valid JSON ({exc})") from exc


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of a JSONL file (blank lines skipped); a bad line raises :class:`JsonlError` naming file and line."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise JsonlError(f"{path}: line {i} is not valid JSON ({exc})") from exc
    return rows
