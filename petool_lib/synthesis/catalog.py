"""Tool catalogs for synthesis: a ToolBench-format directory, the built-in sample, or the official test set's docs.

Every source becomes a sorted list of :class:`Api` records (one per API, ``<Category>.<Tool>.<API>``). Malformed
inputs never crash a run: each skipped file or API is recorded in :attr:`Catalog.skipped` with a reason, and
:meth:`Catalog.skip_counts` gives the per-reason counts the manifest reports.

ToolBench layout: ``<root>/<Category>/<tool>.json`` with ``tool_name``, ``tool_description`` and ``api_list`` of
``{name, description, required_parameters, optional_parameters}``; parameters ``{name, type, description,
default}``. Optional extras understood here: ``pricing`` and ``score`` (ToolBench's service-level metadata) on the
tool, and ``Example`` / ``example`` (``{"Scenario", "Parameters"}``) on an API.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

from ..core.data import Entry, api_full_name, split_tool_name

SAMPLE_PACKAGE_DIR = "resources/sample_tools"
PARAM_KEYS = ("name", "type", "description", "default")


@dataclass
class Api:
    """One API of one tool (provider): its documentation, examples and tool-level metadata."""

    category: str
    tool: str
    name: str
    description: str
    tool_description: str = ""
    required_parameters: list[dict[str, Any]] = field(default_factory=list)
    optional_parameters: list[dict[str, Any]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    api_id: int | None = None
    source: str = "toolbench"
    documented: bool = True

    @property
    def full_name(self) -> str:
        return f"<{self.category}>.<{self.tool}>.<{self.name}>"

    @property
    def provider(self) -> str:
        """``<Category>.<Tool>``: what a user prefers."""
        return f"<{self.category}>.<{self.tool}>"

    @property
    def parameters(self) -> list[dict[str, Any]]:
        return self.required_parameters + self.optional_parameters

    def candidate(self) -> dict[str, Any]:
        """The official candidate-tool record shown in prompts."""
        return {
            "tool_name": self.full_name,
            "tool_description": self.description,
            "required_parameters": self.required_parameters,
            "optional_parameters": self.optional_parameters,
        }

    def same_func_record(self, example: dict[str, Any] | None = None) -> dict[str, Any]:
        """The official ``apis_same_func`` / ``api_ground_truth`` record."""
        ex = example if example is not None else (self.examples[0] if self.examples else {"Scenario": "", "Parameters": {}})
        return {
            "api_name": self.name,
            "api_desc": self.description,
            "required_parameters": self.required_parameters,
            "optional_parameters": self.optional_parameters,
            "Example": {"Scenario": ex.get("Scenario", ""), "Parameters": ex.get("Parameters", {})},
            "tool_name": self.tool,
            "tool_desc": self.tool_description,
            "category_name": self.category,
            "api_id": self.api_id if self.api_id is not None else -1,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool_name": self.full_name, "category": self.category, "tool": self.tool, "api": self.name,
            "description": self.description, "tool_description": self.tool_description,
            "required_parameters": self.required_parameters, "optional_parameters": self.optional_parameters,
            "examples": self.examples, "meta": self.meta, "api_id": self.api_id, "source": self.source,
            "documented": self.documented,
        }


@dataclass
class Skip:
    """One skipped input: which file (and API), and why."""

    file: str
    reason: str
    api: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"file": self.file, "api": self.api, "reason": self.reason}


@dataclass
class Catalog:
    """The APIs of one source, sorted by full name, plus every input that was skipped."""

    source: str
    apis: list[Api]
    skipped: list[Skip] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.apis.sort(key=lambda a: a.full_name)
        self.by_name: dict[str, Api] = {a.full_name: a for a in self.apis}

    def skip_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(s.reason for s in self.skipped).items()))

    @property
    def documented(self) -> list[Api]:
        return [a for a in self.apis if a.documented]

    def providers(self) -> dict[str, list[Api]]:
        out: dict[str, list[Api]] = {}
        for a in self.apis:
            out.setdefault(a.provider, []).append(a)
        return out

    def categories(self) -> dict[str, int]:
        return dict(sorted(Counter(a.category for a in self.apis).items()))

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source, "apis": len(self.apis), "documented_apis": len(self.documented),
            "providers": len(self.providers()), "categories": len(self.categories()),
            "skipped": self.skip_counts(),
        }


# --------------------------------------------------------------------------------------------------------------
# Validation helpers


def _clean_param(p: Any) -> dict[str, Any] | None:
    """A parameter with ``name`` (and ``type``/``description``/``default`` filled in when absent); None if invalid."""
    if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not p["name"].strip():
        return None
    if all(k in p for k in PARAM_KEYS) and len(p) == len(PARAM_KEYS):
        return p  # keep the source's record exactly (byte-faithful candidates)
    return {
        "name": p["name"],
        "type": str(p.get("type") or "STRING"),
        "description": str(p.get("description") or ""),
        "default": p.get("default", ""),
    }


def _clean_example(ex: Any) -> dict[str, Any] | None:
    if isinstance(ex, dict) and isinstance(ex.get("Scenario"), str) and ex["Scenario"].strip():
        params = ex.get("Parameters", {})
        return {"Scenario": ex["Scenario"], "Parameters": params if isinstance(params, dict) else {}}
    return None


def _tool_meta(raw: dict[str, Any]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if isinstance(raw.get("pricing"), str):
        meta["pricing"] = raw["pricing"]
    score = raw.get("score")
    if isinstance(score, dict):
        meta["score"] = {k: v for k, v in score.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return meta


def parse_tool(raw: Any, category: str, file: str, source: str = "toolbench") -> tuple[list[Api], list[Skip]]:
    """Validate one ToolBench tool record; returns its valid APIs and the skips (tool-level or per API)."""
    if not isinstance(raw, dict):
        return [], [Skip(file, "not_an_object")]
    for key in ("tool_name", "api_list"):
        if key not in raw:
            return [], [Skip(file, f"missing_field:{key}")]
    tool = raw["tool_name"]
    if not isinstance(tool, str) or not tool.strip():
        return [], [Skip(file, "missing_field:tool_name")]
    api_list = raw["api_list"]
    if not isinstance(api_list, list):
        return [], [Skip(file, "bad_field:api_list")]
    if not api_list:
        return [], [Skip(file, "empty_api_list")]
    tool_desc = raw.get("tool_description") if isinstance(raw.get("tool_description"), str) else ""
    meta = _tool_meta(raw)
    apis: list[Api] = []
    skips: list[Skip] = []
    seen: set[str] = set()
    for i, a in enumerate(api_list):
        label = a.get("name", f"#{i}") if isinstance(a, dict) else f"#{i}"
        if not isinstance(a, dict):
            skips.append(Skip(file, "api_not_an_object", str(label)))
            continue
        name = a.get("name")
        if not isinstance(name, str) or not name.strip():
            skips.append(Skip(file, "api_missing_field:name", str(label)))
            continue
        if "description" not in a or not isinstance(a["description"], str):
            skips.append(Skip(file, "api_missing_field:description", name))
            continue
        if name in seen:
            skips.append(Skip(file, "duplicate_api", name))
            continue
        lists = []
        for key in ("required_parameters", "optional_parameters"):
            value = a.get(key, [])
            lists.append(value if isinstance(value, list) else None)
        if any(v is None for v in lists):
            skips.append(Skip(file, "api_bad_parameters", name))
            continue
        req = [_clean_param(p) for p in lists[0]]
        opt = [_clean_param(p) for p in lists[1]]
        if any(p is None for p in req + opt):
            skips.append(Skip(file, "api_bad_parameters", name))
            continue
        names = [p["name"] for p in req + opt]  # type: ignore[index]
        if len(set(names)) != len(names):
            skips.append(Skip(file, "api_duplicate_parameter", name))
            continue
        raw_ex = a.get("Example", a.get("example"))
        raw_examples = a.get("examples", [raw_ex] if raw_ex is not None else [])
        examples = [e for e in (_clean_example(x) for x in (raw_examples if isinstance(raw_examples, list) else []))
                    if e is not None]
        seen.add(name)
        apis.append(Api(category=category, tool=tool, name=name, description=a["description"],
                        tool_description=tool_desc, required_parameters=req, optional_parameters=opt,  # type: ignore[arg-type]
                        examples=examples, meta=dict(meta), api_id=a.get("api_id") if isinstance(a.get("api_id"), int) else None,
                        source=source))
    if not apis and not skips:
        skips.append(Skip(file, "no_valid_api"))
    return apis, skips


def load_toolbench_dir(root: str | Path, source: str = "toolbench") -> Catalog:
    """Load ``<root>/<Category>/<tool>.json`` files; malformed files/APIs are skipped and counted, never raised."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"tool directory not found: {root}")
    apis: list[Api] = []
    skipped: list[Skip] = []
    tools_seen: set[tuple[str, str]] = set()
    for path in sorted(root.glob("*/*.json")):
        rel = str(path.relative_to(root))
        category = path.parent.name
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            skipped.append(Skip(rel, "invalid_json", str(exc)[:80]))
            continue
        tool_apis, skips = parse_tool(raw, category, rel, source)
        skipped.extend(skips)
        if tool_apis:
            key = (category, tool_apis[0].tool)
            if key in tools_seen:
                skipped.append(Skip(rel, "duplicate_tool", tool_apis[0].tool))
                continue
            tools_seen.add(key)
            apis.extend(tool_apis)
    return Catalog(source=source, apis=apis, skipped=skipped)


def sample_dir() -> Path:
    """The built-in sample catalog (package data under ``petool_lib/resources/sample_tools``)."""
    return Path(str(resources.files("petool_lib") / SAMPLE_PACKAGE_DIR))


def load_sample() -> Catalog:
    """The built-in sample catalog: a few categories of providers offering the same jobs, with examples."""
    return load_toolbench_dir(sample_dir(), source="sample")


# --------------------------------------------------------------------------------------------------------------
# The official test set's tool documentation


def _infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, (int, float)):
        return "NUMBER"
    return "STRING"


def load_official_catalog(entries: Iterable[Entry]) -> Catalog:
    """The tool docs inside the official test set.

    Documented APIs come from the candidates and ``apis_same_func`` (with their ``Example`` and ids). APIs that only
    appear as calls in the interaction histories are added as *undocumented* APIs (parameters inferred from the
    calls, the call's instruction kept as an example): they fill synthesized histories but are never candidates or
    targets. Every history call also becomes an example of its API (instruction + parameters), as in the official
    histories, where each item is an API's example scenario.
    """
    from ..core.prompts import parse_prompt

    entries = list(entries)
    docs: dict[str, dict[str, Any]] = {}
    group_rec: dict[str, dict[str, Any]] = {}
    calls: dict[str, list[dict[str, Any]]] = {}
    skipped: list[Skip] = []
    for e in entries:
        for c in e.candidates:
            docs.setdefault(c["tool_name"], c)
        for rec in [e.api_ground_truth, *e.same_func]:
            if all(k in rec for k in ("category_name", "tool_name", "api_name")):
                group_rec.setdefault(api_full_name(rec), rec)
        for s in ("preferred", "ratings"):
            for h in parse_prompt(e.prompts[s], s).history:
                params = h.tool_call.get("parameters")
                if isinstance(params, dict):
                    calls.setdefault(h.tool_name, [])
                    ex = {"Scenario": h.instruction, "Parameters": params}
                    if ex not in calls[h.tool_name]:
                        calls[h.tool_name].append(ex)
    apis: list[Api] = []
    for name in sorted(set(docs) | set(group_rec) | set(calls)):
        try:
            cat, tool, api = split_tool_name(name)
        except ValueError:
            skipped.append(Skip("official", "bad_tool_name", name))
            continue
        rec = group_rec.get(name)
        doc = docs.get(name)
        examples: list[dict[str, Any]] = []
        if rec and _clean_example(rec.get("Example")):
            examples.append(_clean_example(rec["Example"]))  # type: ignore[arg-type]
        for ex in calls.get(name, []):
            if ex not in examples:
                examples.append(ex)
        if doc is not None or rec is not None:
            src = doc if doc is not None else {
                "tool_description": rec.get("api_desc", ""), "required_parameters": rec.get("required_parameters", []),
                "optional_parameters": rec.get("optional_parameters", [])}  # type: ignore[union-attr]
            req = [_clean_param(p) for p in src.get("required_parameters", [])]
            opt = [_clean_param(p) for p in src.get("optional_parameters", [])]
            if any(p is None for p in req + opt):
                skipped.append(Skip("official", "api_bad_parameters", name))
                continue
            apis.append(Api(category=cat, tool=tool, name=api, description=str(src.get("tool_description") or ""),
                            tool_description=str((rec or {}).get("tool_desc") or ""), required_parameters=req,  # type: ignore[arg-type]
                            optional_parameters=opt, examples=examples,  # type: ignore[arg-type]
                            api_id=(rec or {}).get("api_id"), source="official-doc", documented=True))
        else:
            seen_params: dict[str, Any] = {}
            for ex in examples:
                for k, v in ex["Parameters"].items():
                    seen_params.setdefault(k, v)
            params = [{"name": k, "type": _infer_type(v), "description": "", "default": ""} for k, v in seen_params.items()]
            apis.append(Api(category=cat, tool=tool, name=api, description="", optional_parameters=params,
                            examples=examples, source="official-history", documented=False))
    return Catalog(source="official", apis=apis, skipped=skipped)


def load_catalog(tools: str, test_entries: list[Entry] | None = None) -> Catalog:
    """``sample`` | ``official`` (needs the official entries) | a ToolBench-format directory."""
    if tools == "sample":
        return load_sample()
    if tools == "official":
        if test_entries is None:
            raise FileNotFoundError("--tools official needs the official test set (pass --test-set PATH)")
        return load_official_catalog(test_entries)
    return load_toolbench_dir(tools)
