"""Loading and validating the official PEToolBench test set.

The file is a JSON list of entries; each entry holds all three settings of one test case
(see ``shared/petoolbench/README.md``). We never copy it into the repository: it is found by
explicit path, directory, ``PETOOLBENCH_DIR``, the workplace's ``../shared/petoolbench``, or
(when online) the Hugging Face dataset ``travisxu/PEToolBench``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .io import InputError, JsonlError, read_json

SETTINGS: tuple[str, ...] = ("preferred", "ratings", "chronological")
# The "without history" ablation (the reference repo's ``instruction_wo_history``): the preferred-only prompt with
# an empty interaction history. Accepted wherever a setting is; never part of "all".
NO_HISTORY = "none"
ALL_SETTINGS: tuple[str, ...] = (*SETTINGS, NO_HISTORY)
_ALIASES = {
    "none": NO_HISTORY, "n": NO_HISTORY, "wo_history": NO_HISTORY, "no-history": NO_HISTORY,
    "without-history": NO_HISTORY,
    "p": "preferred", "preferred": "preferred", "preferred-only": "preferred", "preferred_only": "preferred",
    "r": "ratings", "ratings": "ratings", "rating": "ratings", "rating-integrated": "ratings",
    "rating_integrated": "ratings",
    "c": "chronological", "chronological": "chronological", "chrono": "chronological",
}
# The two markers of the official prompt layout (task text, history JSON, candidate-tools JSON, format text);
# petool_lib.core.prompts parses and renders the whole layout.
HISTORY_MARK = "Interaction history is:\n"
TOOLS_MARK = "\n\nAvailable tools you can call with input parameters are listed here:\n"
TEST_FILENAME = "user_entries_test.json"
HF_DATASET = "travisxu/PEToolBench"
REPO_ROOT = Path(__file__).resolve().parents[2]


class DataError(InputError):
    """Malformed input: the message names the file, the entry and the field."""


def normalize_setting(setting: str) -> str:
    """Map ``p``/``r``/``c``/``n`` and long names onto ``preferred``/``ratings``/``chronological``/``none``."""
    key = str(setting).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown setting {setting!r}; expected one of {ALL_SETTINGS} or p/r/c/n")
    return _ALIASES[key]


def resolve_settings(setting: str | None = "all") -> list[str]:
    """``all`` (or None) gives the three paper settings; otherwise a comma-separated list of settings (``none``, the
    no-history ablation, only when named)."""
    if setting is None or str(setting).strip().lower() == "all":
        return list(SETTINGS)
    return [normalize_setting(s) for s in str(setting).split(",") if s.strip()]


def api_full_name(api: dict[str, Any]) -> str:
    """``<Category>.<Tool>.<API>`` name of an ``apis_same_func`` / ``api_ground_truth`` record."""
    return f"<{api['category_name']}>.<{api['tool_name']}>.<{api['api_name']}>"


def split_tool_name(name: str) -> tuple[str, str, str]:
    """Split ``<Cat>.<Tool>.<API>`` into its three parts (API names may contain dots or brackets)."""
    if not (name.startswith("<") and name.endswith(">")):
        raise ValueError(f"not a <Cat>.<Tool>.<API> name: {name!r}")
    parts = name[1:-1].split(">.<")
    if len(parts) < 3:
        raise ValueError(f"not a <Cat>.<Tool>.<API> name: {name!r}")
    return parts[0], parts[1], ">.<".join(parts[2:])


def name_text(name: str) -> str:
    """The start of a call up to the end of its tool name, in the official serialisation: ``{"tool_name": "NAME"``
    (what the rank mode scores, and a ``target: name`` training completion)."""
    return '{"tool_name": ' + json.dumps(name, ensure_ascii=False)


def provider_of(name: str) -> str:
    """The provider part ``<Cat>.<Tool>`` of a full tool name (what a user prefers)."""
    cat, tool, _ = split_tool_name(name)
    return f"<{cat}>.<{tool}>"


@dataclass
class Entry:
    """One official test case with its three prompts."""

    entry_id: int
    query: str
    prompts: dict[str, str]
    candidates: list[dict[str, Any]]
    ground_truth: dict[str, Any]
    api_ground_truth: dict[str, Any]
    func: str
    same_func: list[dict[str, Any]]
    tool_comb: list[str] = field(default_factory=list)
    num_tools_combined: int = 0
    history_length: int = 0

    @property
    def candidate_names(self) -> list[str]:
        return [c["tool_name"] for c in self.candidates]

    @property
    def group_names(self) -> list[str]:
        """Full names of the ground truth's functional group (``apis_same_func``)."""
        return [api_full_name(a) for a in self.same_func]

    @property
    def category(self) -> str:
        return str(self.api_ground_truth.get("category_name") or split_tool_name(self.ground_truth["tool_name"])[0])

    def prompt(self, setting: str) -> str:
        """The system prompt of ``setting``; ``none`` = the preferred-only prompt with an empty history."""
        setting = normalize_setting(setting)
        if setting == NO_HISTORY:
            return without_history(self.prompts["preferred"])
        return self.prompts[setting]

    def to_dict(self) -> dict[str, Any]:
        """The official combined format (what :func:`load_test_set` reads)."""
        return {
            "query": self.query,
            **{f"instruction_{s}": self.prompts[s] for s in SETTINGS if s in self.prompts},
            "apis_candidate": json.dumps(self.candidates, ensure_ascii=False),
            "api_call_ground_truth": self.ground_truth,
            "api_ground_truth": self.api_ground_truth,
            "func": self.func,
            "apis_same_func": self.same_func,
            "tool_comb": self.tool_comb,
            "num_tools_combined": str(self.num_tools_combined),
            "history_length": self.history_length,
            "entry_id": self.entry_id,
        }


def without_history(text: str) -> str:
    """The same system prompt with an empty interaction history (``[]``), every other byte unchanged."""
    if text.count(HISTORY_MARK) != 1 or text.count(TOOLS_MARK) != 1:
        raise ValueError("prompt must contain exactly one history marker and one tool-list marker")
    head, rest = text.split(HISTORY_MARK)
    return head + HISTORY_MARK + "[]" + TOOLS_MARK + rest.split(TOOLS_MARK, 1)[1]


def _need(raw: dict[str, Any], key: str, where: str, types: type | tuple[type, ...]) -> Any:
    if key not in raw:
        raise DataError(f"{where}: missing field {key!r}")
    value = raw[key]
    if not isinstance(value, types):
        raise DataError(f"{where}: field {key!r} has type {type(value).__name__}, expected {types}")
    return value


def _int_field(raw: dict[str, Any], key: str, where: str) -> int:
    """An optional integer field (absent, null or "" is 0; "3" is accepted as the official files write it)."""
    try:
        return int(raw.get(key) or 0)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: field {key!r} is not an integer") from exc


def entry_from_dict(raw: Any, source: str = "<memory>", index: int = 0) -> Entry:
    """Validate one raw entry; errors name the source, the entry id (or index) and the field."""
    if not isinstance(raw, dict):
        raise DataError(f"{source}: entry #{index} is a {type(raw).__name__}, expected an object")
    eid = raw.get("entry_id", f"#{index}")
    where = f"{source}: entry {eid}"
    entry_id = _need(raw, "entry_id", where, int)
    prompts = {s: _need(raw, f"instruction_{s}", where, str) for s in SETTINGS}
    cands_raw = _need(raw, "apis_candidate", where, (str, list))
    try:
        candidates = json.loads(cands_raw) if isinstance(cands_raw, str) else cands_raw
    except (ValueError, RecursionError) as exc:  # not JSON, an over-long number, nesting too deep
        raise DataError(f"{where}: field 'apis_candidate' is not valid JSON ({exc})") from exc
    if not isinstance(candidates, list) or not all(isinstance(c, dict) and "tool_name" in c for c in candidates):
        raise DataError(f"{where}: field 'apis_candidate' must be a list of objects with 'tool_name'")
    gt = _need(raw, "api_call_ground_truth", where, dict)
    if not isinstance(gt.get("tool_name"), str) or not isinstance(gt.get("parameters"), dict):
        raise DataError(f"{where}: field 'api_call_ground_truth' needs 'tool_name' (str) and 'parameters' (object)")
    same = _need(raw, "apis_same_func", where, list)
    for j, api in enumerate(same):
        if not isinstance(api, dict) or not all(k in api for k in ("category_name", "tool_name", "api_name")):
            raise DataError(f"{where}: field 'apis_same_func'[{j}] needs category_name, tool_name, api_name")
    ntc = _int_field(raw, "num_tools_combined", where)
    return Entry(
        entry_id=entry_id,
        query=_need(raw, "query", where, str),
        prompts=prompts,
        candidates=candidates,
        ground_truth=gt,
        api_ground_truth=_need(raw, "api_ground_truth", where, dict),
        func=str(_need(raw, "func", where, (str, int))),
        same_func=same,
        tool_comb=list(raw.get("tool_comb") or []),
        num_tools_combined=ntc,
        history_length=_int_field(raw, "history_length", where),
    )


SETTING_FILES: dict[str, str] = {s: f"user_entries_test_{s[0]}.json" for s in SETTINGS}  # the reference's layout
SETTING_SUBDIR = "dataset_test"  # where the reference repository keeps them
SHARED_FIELDS = ("query", "apis_candidate", "api_call_ground_truth")  # must agree across the per-setting files
LAYOUT_COMBINED, LAYOUT_PER_SETTING = "combined", "per-setting"
logger = logging.getLogger(__name__)


class TestSet(list):  # noqa: D101 - a list of entries that also says where and in which layout it was found
    """The entries (a plain ``list[Entry]``), with ``layout`` (``combined``: one ``user_entries_test.json``;
    ``per-setting``: the reference's ``user_entries_test_{p,r,c}.json``) and ``files`` (what was read)."""

    __test__ = False  # not a pytest class

    def __init__(self, entries: list[Entry], layout: str, files: list[Path]) -> None:
        super().__init__(entries)
        self.layout = layout
        self.files = files


def setting_files(directory: str | os.PathLike[str]) -> dict[str, Path] | None:
    """The reference's per-setting files in ``directory`` or its ``dataset_test/`` subfolder (all three), or None."""
    for d in (Path(directory), Path(directory) / SETTING_SUBDIR):
        files = {s: d / f for s, f in SETTING_FILES.items()}
        if all(p.is_file() for p in files.values()):
            return files
    return None


def _in_directory(d: Path) -> Path | None:
    """A directory's test set: its combined file, else the directory itself when it holds the per-setting files."""
    if (d / TEST_FILENAME).is_file():
        return d / TEST_FILENAME
    files = setting_files(d)
    return files["preferred"].parent if files else None


def _default_locations() -> list[Path]:
    return [REPO_ROOT.parent / "shared" / "petoolbench", Path.cwd().parent / "shared" / "petoolbench"]


def _download_from_hub() -> Path:
    """Fetch the official test set from the HF dataset (only when online): the combined file (plain, zipped or under
    ``data/``), else the reference's per-setting files under ``dataset_test/`` (their directory is returned)."""
    from huggingface_hub import hf_hub_download  # lazy: not needed offline

    errors = []
    for fname in (TEST_FILENAME, f"{TEST_FILENAME}.zip", f"data/{TEST_FILENAME}"):
        try:
            path = Path(hf_hub_download(HF_DATASET, fname, repo_type="dataset"))
        except Exception as exc:  # noqa: BLE001 - report every attempt
            errors.append(f"{fname}: {type(exc).__name__}")
            continue
        if path.suffix == ".zip":
            import zipfile

            out = path.with_suffix("")
            if not out.exists():
                with zipfile.ZipFile(path) as zf:
                    member = next(n for n in zf.namelist() if n.endswith(TEST_FILENAME))
                    out.write_bytes(zf.read(member))
            path = out
        return path
    try:
        paths = [Path(hf_hub_download(HF_DATASET, f"{SETTING_SUBDIR}/{f}", repo_type="dataset"))
                 for f in SETTING_FILES.values()]
        return paths[0].parent
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{SETTING_SUBDIR}/user_entries_test_{{p,r,c}}.json: {type(exc).__name__}")
    raise FileNotFoundError(
        f"PEToolBench test set not found locally and could not be fetched from {HF_DATASET} ({'; '.join(errors)}). "
        f"Pass --test PATH or set PETOOLBENCH_DIR."
    )


def find_test_file(path: str | os.PathLike[str] | None = None, allow_download: bool = True) -> Path:
    """Resolve the official test set: a file, a directory holding it, ``PETOOLBENCH_DIR``, ../shared, the hub.

    A directory holds either the combined ``user_entries_test.json`` (returned) or the reference repository's
    per-setting ``user_entries_test_{p,r,c}.json``, itself or in its ``dataset_test/`` subfolder (the folder that
    holds them is returned; :func:`load_test_set` reads both layouts)."""
    if path:
        p = Path(path)
        if p.is_dir():
            found = _in_directory(p)
            if found is None:
                raise FileNotFoundError(f"test set not found in {p}: neither {TEST_FILENAME} nor "
                                        f"{', '.join(SETTING_FILES.values())} (there or in {SETTING_SUBDIR}/)")
            return found
        if not p.is_file():
            raise FileNotFoundError(f"test set not found: {p}")
        return p
    env = os.environ.get("PETOOLBENCH_DIR")
    if env:
        return find_test_file(env, allow_download=False)
    for d in _default_locations():
        found = _in_directory(d) if d.is_dir() else None
        if found is not None:
            return found
    if allow_download and os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True"):
        return _download_from_hub()
    raise FileNotFoundError("PEToolBench test set not found; pass a path or set PETOOLBENCH_DIR")


def _read_list(p: Path) -> list[Any]:
    try:
        raw = read_json(p)
    except JsonlError as exc:  # not UTF-8, not JSON, an over-long number, nesting too deep: file and line
        raise DataError(str(exc)) from exc
    if not isinstance(raw, list):
        raise DataError(f"{p}: expected a JSON list of entries, got {type(raw).__name__}")
    if not raw:
        raise DataError(f"{p}: the test set is empty (a JSON list with no entries)")
    return raw


def _shared_value(raw: dict[str, Any], key: str) -> Any:
    value = raw.get(key)
    if key == "apis_candidate" and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def merge_setting_files(files: dict[str, Path]) -> list[dict[str, Any]]:
    """The reference's per-setting files merged, by ``entry_id``, into combined raw entries.

    Each row of ``user_entries_test_<s>.json`` carries its setting's prompt as ``instruction_<setting>`` (the key the
    reference's code reads; a bare ``instruction`` is accepted too) and the entry's other fields. The shared fields
    (query, candidates, ground truth) must agree across the three files: an error names the file and the entry
    otherwise. Rows without ``entry_id`` are matched by position. Entry order: the first file's."""
    merged: dict[Any, dict[str, Any]] = {}
    origin: dict[Any, Path] = {}
    for setting, p in files.items():
        rows = _read_list(p)
        seen = set()
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError(f"{p}: entry #{i} is a {type(row).__name__}, expected an object")
            eid = row.get("entry_id", i)
            if eid in seen:
                raise DataError(f"{p}: duplicate entry_id {eid!r}")
            seen.add(eid)
            key = f"instruction_{setting}"
            prompt = row.get(key, row.get("instruction"))
            if not isinstance(prompt, str):
                raise DataError(f"{p}: entry {eid}: missing field {key!r} (the {setting} prompt)")
            if eid not in merged:
                if merged and setting != next(iter(files)):
                    raise DataError(f"{p}: entry {eid} is not in {files[next(iter(files))]}")
                merged[eid] = {k: v for k, v in row.items() if k != "instruction" and not k.startswith("instruction_")}
                merged[eid].setdefault("entry_id", eid)
                origin[eid] = p
            else:
                base = merged[eid]
                for f in SHARED_FIELDS:
                    if f in row and f in base and _shared_value(row, f) != _shared_value(base, f):
                        raise DataError(f"{p}: entry {eid}: field {f!r} differs from {origin[eid]}")
                for k, v in row.items():  # fields only some files carry
                    if k != "instruction" and not k.startswith("instruction_"):
                        base.setdefault(k, v)
            merged[eid][key] = prompt
        missing = [eid for eid in merged if f"instruction_{setting}" not in merged[eid]]
        if missing:
            raise DataError(f"{p}: entry {missing[0]} (and {len(missing) - 1} more) of the other files is missing")
    return list(merged.values())


def load_test_set(path: str | os.PathLike[str] | None = None, limit: int | None = None) -> TestSet:
    """Load and validate the official test set (or a synthesized one in the same format), in either layout: the
    combined ``user_entries_test.json`` or the reference's per-setting files (a directory: :func:`find_test_file`).
    The result is a list of entries whose ``layout`` and ``files`` say what was read (also logged)."""
    p = find_test_file(path)
    files = setting_files(p) if p.is_dir() else None
    if files:
        raw, layout, read = merge_setting_files(files), LAYOUT_PER_SETTING, list(files.values())
        source = str(files["preferred"].parent)
    else:
        raw, layout, read, source = _read_list(p), LAYOUT_COMBINED, [p], str(p)
    entries = [entry_from_dict(r, source, i) for i, r in enumerate(raw)]
    ids = [e.entry_id for e in entries]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"{source}: duplicate entry_id values {dup}")
    logger.info("test set: %d entries, %s layout (%s)", len(entries), layout, ", ".join(map(str, read)))
    return TestSet(entries[:limit] if limit else entries, layout, read)


def select_subset(entries: list[Entry], n: int | None, seed: int = 0) -> list[Entry]:
    """A fixed, seeded subset of ``n`` entries (all when ``n`` is None or too large), in test-file order.

    The same (n, seed) gives the same entry ids for every setting and every model, so results are comparable.
    """
    if n is None or n >= len(entries):
        return list(entries)
    import random

    ids = sorted(e.entry_id for e in entries)
    keep = set(random.Random(seed).sample(ids, n))
    return [e for e in entries if e.entry_id in keep]
