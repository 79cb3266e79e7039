"""JSON / JSONL files: one reading and validation layer, and atomic writes (a temp file beside the target, then one
rename).

One place for the formats every stage reads and writes: a half-written file never replaces a good one, and every
reading error names the file and the line (:class:`JsonlError`): bytes that are not UTF-8, a line that is not
JSON, a number too long to convert, nesting too deep to parse. :func:`ensure_writable` lets a command refuse an
output path it cannot write *before* doing the work (:class:`OutputError`).
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path
from typing import Any, Iterable


class InputError(ValueError):
    """A malformed input file or record: the message names the file (and the line or entry)."""


class JsonlError(InputError):
    """A JSON / JSONL file that cannot be read (the message names the file and line)."""


class OutputError(OSError, ValueError):
    """An output path that cannot be written (the message names it). Both an ``OSError`` and a ``ValueError``, so
    the commands' usual ``except (..., ValueError)`` turns it into a one-line error."""


def _tmp(path: Path) -> Path:
    """A temp name beside ``path`` unique to this process *and* this call (pid + random part)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` via a temp file and a rename; creates the parent folder.

    The temp file is created exclusively under a name no other writer uses, so two runs writing the same target
    never write through each other's temp file: the last rename wins and the target is always one whole file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _existing_ancestor(path: Path) -> Path:
    p = path.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def ensure_writable(path: str | os.PathLike[str], option: str = "") -> Path:
    """Check, before any work, that the file ``path`` can be written; creates nothing.

    Writing is atomic (a temp file and a rename in the parent folder, created when missing), so what must take a
    new file is the nearest folder that exists. Raises :class:`OutputError` (``"[option ]PATH: why"``) when
    ``path`` is a folder, an ancestor is a file, or that folder refuses a probe file (read-only, no permission).
    """
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    if path.is_dir():
        raise OutputError(f"{where}: is a directory, expected a file path")
    base = _existing_ancestor(path.parent)
    if not base.is_dir():
        raise OutputError(f"{where}: {base} is not a directory")
    _probe(base, where)
    return path


def ensure_writable_dir(path: str | os.PathLike[str], option: str = "") -> Path:
    """Check, before any work, that the folder ``path`` can be created or written into; creates nothing. Raises
    :class:`OutputError` (``"[option ]PATH: why"``) when ``path`` or an ancestor is a file, or the nearest existing
    folder refuses a probe file."""
    path = Path(path)
    where = f"{option} {path}" if option else str(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{where}: exists and is not a directory")
    base = _existing_ancestor(path)
    if not base.is_dir():
        raise OutputError(f"{where}: {base} is not a directory")
    _probe(base, where)
    return path


def _probe(base: Path, where: str) -> None:
    """Create and remove a probe file in the folder ``base``; :class:`OutputError` naming ``where`` if refused."""
    probe = base / f".petool-write-check.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    try:
        with open(probe, "x", encoding="utf-8"):
            pass
    except OSError as exc:
        raise OutputError(f"{where}: cannot write to {base} ({exc.strerror or exc})") from None
    probe.unlink()


def write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = None, sort_keys: bool = False) -> Path:
    """``obj`` as JSON (UTF-8, non-ASCII kept), atomically."""
    return write_text_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent, sort_keys=sort_keys) + "\n")


def dumps_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """One JSON object per line (UTF-8, non-ASCII kept), atomically."""
    return write_text_atomic(path, dumps_jsonl(rows))


def _read_utf8(path: str | os.PathLike[str]) -> str:
    """The file's text; bytes that are not UTF-8 raise :class:`JsonlError` naming the file, line and byte."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise JsonlError(f"{path}: line {line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at byte column "
                         f"{column})") from exc


def _json_problem(exc: BaseException) -> str:
    """What is wrong with a JSON text, in words (``json`` raises three kinds of errors)."""
    if isinstance(exc, json.JSONDecodeError):
        return f"not valid JSON ({exc})"
    if isinstance(exc, RecursionError):
        return "not readable JSON (nested too deeply)"
    return f"not readable JSON ({exc})"  # e.g. an integer over Python's digit limit


def read_json(path: str | os.PathLike[str]) -> Any:
    """One JSON document; any problem raises :class:`JsonlError` naming the file (and line where known)."""
    text = _read_utf8(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonlError(f"{path}: line {exc.lineno}: {_json_problem(exc)}") from exc
    except (ValueError, RecursionError) as exc:
        raise JsonlError(f"{path}: {_json_problem(exc)}") from exc


def read_jsonl_lines(path: str | os.PathLike[str]) -> list[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank line of a JSONL file; any problem (not UTF-8, not JSON, an
    over-long number, too deep) raises :class:`JsonlError` naming the file and line."""
    rows = []
    for i, line in enumerate(io.StringIO(_read_utf8(path), newline=None), 1):
        if not line.strip():
            continue
        try:
            rows.append((i, json.loads(line)))
        except (ValueError, RecursionError) as exc:
            raise JsonlError(f"{path}: line {i}: {_json_problem(exc)}") from exc
    return rows


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """Rows of a JSONL file (blank lines skipped); a bad line raises :class:`JsonlError` naming file and line."""
    return [row for _, row in read_jsonl_lines(path)]
