"""Step 5, instructions and ground-truth calls: a pool of (instruction, parameters) per API.

A pool starts with the API's documented example scenarios (official ``Example`` records, the calls seen in official
histories, ``Example`` entries in ToolBench files); the rest is generated: offline from templates (an action
phrase from the description, parameter values from the documented defaults or from small typed value pools chosen by
parameter name/description), or by a model LLM asked for JSON (validated: known parameter names, every
required parameter present; invalid replies fall back to the template and are counted).

Every random choice comes from a ``random.Random`` seeded by (seed, API name), so pools do not depend on the order in
which APIs are processed.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any, Sequence

from tqdm.auto import tqdm

from .catalog import Api
from .grouping import humanize
from .llm import ChatRequest, SynthLLM, ask_json


@dataclass(frozen=True)
class Instruction:
    """One user instruction and the parameters of the call that fulfils it."""

    text: str
    parameters: dict[str, Any]
    origin: str = "template"  # example | template | model

    def to_dict(self) -> dict[str, Any]:
        return {"instruction": self.text, "parameters": self.parameters, "origin": self.origin}


_POOLS: list[tuple[str, tuple[str, ...], list[Any]]] = [  # (neutral label, name/description keywords, values)
    ("email address", ("email", "address", "recipient"), ["anna.smith@example.com", "support@acme.io", "j.doe@mail.example.org"]),
    ("domain", ("domain",), ["example.com", "acme.io", "mailinator.com"]),
    ("airport", ("iata", "airport", "origin", "destination"), ["JFK", "LHR", "CDG", "NRT", "SFO", "MAD"]),
    ("currency", ("currency", "from_currency", "to_currency", "convert"), ["USD", "EUR", "GBP", "JPY", "CHF"]),
    ("symbol", ("symbol", "ticker", "stock"), ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN"]),
    ("coin", ("coin", "crypto"), ["BTC", "ETH", "SOL"]),
    ("city", ("city", "location", "town", "place"), ["Paris", "Tokyo", "Berlin", "Lisbon", "Toronto", "Sydney"]),
    ("region", ("country", "region", "area", "market", "gov"), ["US", "FR", "DE", "JP", "GB"]),
    ("language", ("lang", "language", "target", "source", "locale"), ["es", "fr", "de", "it", "ja"]),
    ("date", ("date", "day", "checkin", "check_in", "checkout", "check_out", "departure", "from_date", "to_date"),
     ["2024-05-01", "2024-06-15", "2024-09-30", "2025-01-10"]),
    ("month", ("month",), ["2024-06", "2024-11"]),
    ("phone number", ("phone", "mobile"), ["+15551234567", "+447700900123"]),
    ("URL", ("url", "link", "website"), ["https://www.example.com/article/42", "https://example.org/page"]),
    ("flight", ("flight",), ["BA117", "LH400", "AF1234"]),
    ("latitude", ("lat", "latitude"), [48.8566, 35.6762, 40.7128]),
    ("longitude", ("lon", "lng", "longitude"), [2.3522, 139.6503, -74.006]),
    ("subject", ("subject", "title"), ["Meeting tomorrow", "Your order has shipped", "Weekly report"]),
    ("text", ("message", "body", "text", "content", "q", "query", "keyword", "search", "term"),
     ["good morning", "machine learning", "I really enjoyed the concert", "best pizza in town", "climate change"]),
    ("name", ("name", "username", "user"), ["john_doe", "alice", "marketing_team"]),
    ("ID", ("id", "_id", "code"), ["12345", "A1B2C3", "80057281"]),
    ("number", ("limit", "count", "size", "max", "cnt", "days", "page", "rooms", "guests", "adults", "amount", "number",
                "offset"), [1, 2, 3, 5, 10, 20]),
]
_TEMPLATES = ("I want to {action}{args}.", "Please {action}{args}.", "Can you {action}{args}?", "{Action}{args}.",
              "I'd like to {action}{args}.")
_VERBS = {"returns": "get", "return": "get", "gets": "get", "get": "get", "retrieves": "retrieve", "lists": "list",
          "searches": "search", "finds": "find", "translates": "translate", "detects": "detect", "analyses": "analyse",
          "analyzes": "analyze", "checks": "check", "verifies": "verify", "validates": "validate", "sends": "send",
          "converts": "convert", "counts": "count", "creates": "create", "fetches": "fetch", "provides": "get",
          "looks": "look", "tracks": "track", "calculates": "calculate", "generates": "generate", "shows": "show",
          "extracts": "extract", "deletes": "delete", "updates": "update", "downloads": "download", "uploads": "upload"}
_BASE_VERBS = set(_VERBS.values()) | {
    "add", "book", "cancel", "compute", "delete", "download", "edit", "estimate", "find", "log", "login", "logout",
    "lookup", "make", "post", "predict", "query", "read", "register", "remove", "reverse", "schedule", "set", "start",
    "stop", "submit", "subscribe", "summarize", "upload", "write", "measure", "rank", "recommend", "fetch", "look",
    "obtain", "return", "receive", "perform", "run", "view", "display", "load", "save", "parse", "scrape", "transcribe"}
_LEAD = re.compile(r"^(this (endpoint|api|method|function)( will| allows you to| lets you| is used to| can)?|use this to|"
                   r"an? (endpoint|api) (that|to)|endpoint (that|to)|used to)\s+", re.I)


def _pool_for(param: dict[str, Any]) -> tuple[str, list[Any]]:
    """(a provider-neutral label, candidate values) for a parameter, from its name, description and type."""
    name = str(param.get("name", "")).lower()
    desc = str(param.get("description", "")).lower()
    ptype = str(param.get("type", "")).upper()
    words = set(re.split(r"[^a-z]+", name)) | set(re.split(r"[^a-z]+", desc))
    label = ""
    for lab, keys, pool in _POOLS:
        if any(k in words or name == k or name.endswith(k) for k in keys):
            if ptype == "NUMBER" and not all(isinstance(v, (int, float)) for v in pool):
                continue
            label = lab
            if ptype not in ("BOOLEAN", "ENUM") and not ptype.startswith("DATE"):
                return lab, pool
            break
    label = label or (humanize(name) if len(name) > 2 else "value")
    if ptype == "BOOLEAN":
        return label, [True, False]
    if ptype == "ENUM":
        opts = [o.strip() for o in re.split(r"\||,", desc) if 0 < len(o.strip()) < 20]
        if len(opts) >= 2:
            return label, opts
    if ptype.startswith("DATE"):
        return "date", ["2024-05-01", "2024-06-15", "2024-09-30"]
    return label, ([3, 5, 10] if ptype == "NUMBER" else ["example"])


def _values_for(param: dict[str, Any]) -> list[Any]:
    return _pool_for(param)[1]


def param_label(param: dict[str, Any]) -> str:
    """How an instruction names a parameter without using the provider's parameter name."""
    return _pool_for(param)[0]


def action_phrase(api: Api) -> str:
    """A lower-case verb phrase for what the API does (from the description's first sentence, else its name)."""
    desc = " ".join((api.description or "").split())
    first = re.split(r"(?<=[.!?])\s", desc)[0].rstrip(".!? ") if desc else ""
    first = _LEAD.sub("", first)
    if not first or len(first) < 8:
        return f"use {humanize(api.name)}"
    words = first.split()
    w0 = words[0].lower()
    if w0 in _VERBS:
        words[0] = _VERBS[w0]
    elif w0 in _BASE_VERBS:
        words[0] = w0
    else:  # a noun phrase ("Daily weather forecast for a city"): ask to get it
        words = ["get", w0 if not words[0].isupper() else words[0], *words[1:]]
    phrase = " ".join(words)
    return phrase[:140].rsplit(" ", 1)[0] if len(phrase) > 140 else phrase


def _fmt(v: Any) -> str:
    return f"'{v}'" if isinstance(v, str) else json.dumps(v)


def render_instruction(action: str, api: Api, params: dict[str, Any], rng: random.Random) -> str:
    """Template text for ``action`` with the values of ``params``, each named by its neutral label."""
    specs = {p["name"]: p for p in api.parameters}
    args = ""
    if params:
        parts = [f"{param_label(specs.get(k, {'name': k}))} {_fmt(v)}" for k, v in params.items()]
        args = " with " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
    tpl = rng.choice(_TEMPLATES)
    return tpl.format(action=action, Action=action[:1].upper() + action[1:], args=args)


def template_instruction(api: Api, rng: random.Random, action_from: Api | None = None) -> Instruction:
    """One generated (instruction, parameters) for ``api``; the action phrase may come from another API of the same
    group (``action_from``) so that a query does not echo the preferred provider's own wording."""
    params: dict[str, Any] = {}
    for p in api.required_parameters:
        default = p.get("default")
        use_default = default not in ("", None) and rng.random() < 0.4
        params[p["name"]] = default if use_default else rng.choice(_values_for(p))
    for p in api.optional_parameters:
        if rng.random() < 0.3:
            params[p["name"]] = rng.choice(_values_for(p))
    text = render_instruction(action_phrase(action_from or api), api, params, rng)
    return Instruction(text=text, parameters=params, origin="template")


SYSTEM_PROMPT = (
    "You write realistic user instructions for a tool-calling benchmark. Reply with one JSON object only: "
    '{"instructions": [{"instruction": "...", "parameters": {...}}, ...]}. Each instruction is one sentence a user '
    "would type, never names the API or its provider, and states every value the call needs; parameters use only "
    "the API's documented parameter names and include every required one."
)


def _request(api: Api, k: int) -> ChatRequest:
    doc = {"api_description": api.description, "required_parameters": api.required_parameters,
           "optional_parameters": api.optional_parameters,
           "example": api.examples[0] if api.examples else None, "count": k}
    return ChatRequest.of(api.full_name, SYSTEM_PROMPT, json.dumps(doc, ensure_ascii=False)[:4000])


def _valid_call(api: Api, params: Any) -> bool:
    if not isinstance(params, dict):
        return False
    names = {p["name"] for p in api.parameters}
    if not set(params) <= names or not all(p["name"] in params for p in api.required_parameters):
        return False
    return all(isinstance(v, (str, int, float, bool)) or v is None for v in params.values())


def _validate(obj: Any, api: Api) -> list[Instruction] | None:
    items = obj.get("instructions") if isinstance(obj, dict) else None
    if not isinstance(items, list):
        return None
    out = []
    for it in items:
        if not isinstance(it, dict):
            continue
        text = it.get("instruction")
        if isinstance(text, str) and 8 <= len(text.strip()) <= 400 and _valid_call(api, it.get("parameters")):
            out.append(Instruction(" ".join(text.split()), dict(it["parameters"]), origin="model"))
    return out or None


def example_instructions(api: Api) -> list[Instruction]:
    return [Instruction(" ".join(ex["Scenario"].split()), dict(ex.get("Parameters") or {}), origin="example")
            for ex in api.examples]


def build_pools(apis: Sequence[Api], llm: SynthLLM, seed: int, per_api: int = 3, progress: bool = True,
                limit: int | None = None) -> tuple[dict[str, list[Instruction]], dict[str, int]]:
    """``{full name: [Instruction, ...]}`` with at least ``per_api`` distinct instructions per API (examples first).

    With a model LLM, the first ``limit`` APIs (all when None) get their generated part from the model.
    """
    pools: dict[str, list[Instruction]] = {}
    counts = {"examples": 0, "template": 0, "model": 0, "fallback_apis": 0}
    need = {a.full_name: max(0, per_api - len(a.examples)) for a in apis}
    model_apis = [a for a in apis if need[a.full_name] > 0 and a.documented][: limit if limit is not None else len(apis)]
    from_model: dict[str, list[Instruction]] = {}
    if llm.is_model and model_apis:
        values, c = ask_json(llm, [_request(a, need[a.full_name]) for a in model_apis],
                             lambda obj, i: _validate(obj, model_apis[i]), desc="instructions (llm)")
        for a, v in zip(model_apis, values):
            if v is None:
                counts["fallback_apis"] += 1
            else:
                from_model[a.full_name] = v
        counts.update({f"llm_{k}": v for k, v in c.items()})
    for a in tqdm(apis, desc="instruction pools", disable=not progress):
        rng = random.Random(f"{seed}:pool:{a.full_name}")
        pool = example_instructions(a)
        counts["examples"] += len(pool)
        seen = {i.text.lower() for i in pool}
        for ins in from_model.get(a.full_name, []):
            if len(pool) >= per_api:
                break
            if ins.text.lower() not in seen:
                pool.append(ins)
                seen.add(ins.text.lower())
                counts["model"] += 1
        tries = 0
        target = per_api if a.documented or not pool else len(pool)  # history-only APIs keep their observed calls
        while len(pool) < target and tries < 4 * per_api:
            tries += 1
            ins = template_instruction(a, rng)
            if ins.text.lower() not in seen:
                pool.append(ins)
                seen.add(ins.text.lower())
                counts["template"] += 1
        pools[a.full_name] = pool
    return pools, counts


def plan_requests(apis: Sequence[Api], per_api: int = 3, limit: int | None = None) -> list[ChatRequest]:
    todo = [a for a in apis if per_api - len(a.examples) > 0 and a.documented][: limit if limit is not None else len(apis)]
    return [_request(a, per_api - len(a.examples)) for a in todo]


def mask_providers(text: str, tool_names: Sequence[str]) -> str:
    """Provider-neutral query: every mention of a group member's tool name becomes ``...`` (as in the official set)."""
    for name in sorted({t for t in tool_names if len(t.strip()) >= 3}, key=lambda t: (-len(t), t)):
        text = re.sub(re.escape(name.strip()), "...", text, flags=re.I)
    return text


def normalize_text(text: str) -> str:
    """Comparison key for instructions/queries (leakage checks): lower case, single spaces, no end punctuation."""
    return " ".join(str(text).lower().split()).rstrip(" .!?")
