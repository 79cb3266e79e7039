"""Step 5, instructions and ground-truth calls: a pool of (instruction, parameters) per API.

A pool starts with the API's documented example scenarios (official ``Example`` records, the calls seen in official
histories, ``Example`` entries in ToolBench files); the rest is generated: offline from templates, or by a model LLM
asked for JSON (validated: known parameter names, every required parameter present; invalid replies fall back to the
template and are counted).

Offline generation draws each parameter's value with :mod:`petool_lib.synthesis.values` (documented values first,
then listed options, then a realistic generator for the parameter's kind; typed, paired, never a secret; see that
module's docstring) and states at most :data:`MAX_OPTIONAL` optional parameters per instruction.

Instructions are written as users do (first person or imperative, the task first, the values woven into the sentence:
"Show me the current weather conditions for Lisbon.", "I want to find titles for 'Breaking Bad' with up to 20
results."); the API's provider (tool) name never appears in the sentence (a value that contains it, such as a
soundcloud.com URL for the SoundCloud tool, is kept verbatim).

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
from .values import (  # noqa: F401  (USERNAMES, _values_for, param_label: re-exported for existing imports)
    COUNTRY_NAMES,
    LANGUAGE_NAMES,
    USERNAMES,
    _LIMIT,
    _MONTHS,
    _Ctx,
    _api_text,
    _choose,
    _context_kind,
    _direction,
    _entity,
    _label,
    _spec,
    _values_for,
    param_label,
)


@dataclass(frozen=True)
class Instruction:
    """One user instruction and the parameters of the call that fulfils it."""

    text: str
    parameters: dict[str, Any]
    origin: str = "template"  # example | template | model

    def to_dict(self) -> dict[str, Any]:
        return {"instruction": self.text, "parameters": self.parameters, "origin": self.origin}


# --------------------------------------------------------------------------------------------------------------
# Phrasing

_VERBS = {"returns": "get", "return": "get", "gets": "get", "get": "get", "retrieves": "retrieve", "lists": "list",
          "searches": "search", "finds": "find", "translates": "translate", "detects": "detect", "analyses": "analyse",
          "analyzes": "analyze", "checks": "check", "verifies": "verify", "validates": "validate", "sends": "send",
          "converts": "convert", "counts": "count", "creates": "create", "fetches": "fetch", "provides": "get",
          "looks": "look", "tracks": "track", "calculates": "calculate", "generates": "generate", "shows": "show",
          "extracts": "extract", "deletes": "delete", "updates": "update", "downloads": "download", "uploads": "upload",
          "gives": "get", "displays": "show", "queries": "query", "retrieve": "retrieve", "obtains": "get",
          "grabs": "get", "pulls": "get", "scrapes": "scrape", "collects": "collect", "gathers": "gather",
          "cancels": "cancel", "adds": "add", "removes": "remove", "starts": "start", "stops": "stop", "logs": "log",
          "allows": "", "lets": "", "helps": ""}
_BASE_VERBS = set(_VERBS.values()) - {""} | {
    "add", "book", "cancel", "compute", "delete", "download", "edit", "estimate", "find", "log", "login", "logout",
    "lookup", "make", "post", "predict", "query", "read", "register", "remove", "reverse", "schedule", "set", "start",
    "stop", "submit", "subscribe", "summarize", "upload", "write", "measure", "rank", "recommend", "fetch", "look",
    "obtain", "return", "receive", "perform", "run", "view", "display", "load", "save", "parse", "scrape", "transcribe",
    "check", "convert", "detect", "translate", "verify", "validate", "send", "track", "list", "search", "create",
    "update", "generate", "calculate", "analyze", "analyse", "extract", "copy", "move", "rename", "create", "share",
    "follow", "like", "buy", "order", "pay", "play", "stream", "resize", "crop", "compress", "encode", "decode",
    "shorten", "geocode", "classify", "identify", "recognize", "count", "compare", "explore", "browse", "discover"}
_GET_VERBS = {"get", "retrieve", "fetch", "obtain", "list", "show", "display", "view", "return", "receive"}
_FIND_VERBS = {"search", "find", "lookup", "discover", "explore", "browse"}
_LEAD = re.compile(r"^(used for|this (endpoint|api|method|function|route|service|resource|call|operation|tool)"
                   r"( will| allows you to| lets you| is used to| can| helps you| helps to| enables you to)?|"
                   r"use this (endpoint |api |resource )?to|an? (endpoint|api|method|route) (that|to|for)|"
                   r"(endpoint|api|method|route) (that|to|for)|used to|allows (you|users) to|you can|here you can|"
                   r"(?:allows|lets|enables|helps)(?: you| users| developers| me)?(?: to)?|"
                   r"please,?|simply|to|it)\s+", re.I)
_TRAIL = re.compile(r"\s+(and|or|of|from|for|with|to|in|on|by|the|a|an|using|based|via|that|which|as|at)$", re.I)
_META = re.compile(r"\b(api|apis|endpoint|endpoints|request|response|json|parameter|parameters|param|query params?)\b",
                   re.I)
_ACT_KEEP = 110
_DEV_VERBS = {"enter", "provide", "input", "pass", "specify", "type", "insert", "call", "make", "test", "hit", "is",
              "are", "was", "were", "has", "have", "will", "can", "does", "do", "should", "must", "may", "note"}


def _strip_provider(text: str, tool: str, base: bool = True) -> str:
    """``text`` without the provider's (tool's) name, e.g. 'Get a random fortune from the Fortune Cookie API' ->
    'Get a random fortune' (with ``base``, also without the name less a suffix such as 'API', 'Data' or '_v2')."""
    names = {tool.strip()}
    short = re.sub(r"(?i)[\s_-]*(v\d+|api|data|service)$", "", tool.strip()).strip()
    if base and len(short) >= 3:
        names.add(short)
    for name in sorted((n for n in names if len(n) >= 3 or (len(n) == 2 and n.isalpha())), key=lambda n: (-len(n), n)):
        pat = re.escape(name)
        text = re.sub(rf"\s+(?:from|on|in|using|via|with|through|at|by|for)\s+(?:the\s+)?{pat}"
                      rf"(?:\.(?:com|io|net|org|co|de|ai|app))?(?:'s)?"
                      rf"(?:\s+(?:api|service|platform|database|website|app|site|servers?))?(?=$|[\s,.;:!?])", "",
                      text, flags=re.I)
        text = re.sub(rf"(?<![\w]){pat}(?:\.(?:com|io|net|org|co|de|ai|app))?(?:'s)?"
                      rf"(?:\s+(?:api|service|platform|servers?))?(?![\w])\s*", "", text, flags=re.I)
    text = re.sub(r"\b(the|a|an)\s+(the|a|an)\b", r"\1", text, flags=re.I)
    return " ".join(text.split()).strip(" ,")


def _clean_sentence(desc: str) -> str:
    s = next((line for line in desc.strip().splitlines() if line.strip()), "")
    s = re.sub(r"</?[a-zA-Z][\w-]*[^<>]*>?|&\w+;", " ", s)
    s = re.sub(r"\*\*[^*]*\*\*|\{[^}]*\}", " ", s)
    s = re.sub(r"\s*\b(?:from|at|on|of|to|via)?\s*https?://\S+", "", s)
    s = re.sub(r"\b[A-Z0-9]+_[A-Z0-9_]+\b", "", s)
    s = re.sub(r"[*_`#>\"“”]+", " ", s)
    s = re.sub(r"\s*\([^)]*\)", "", s)
    s = re.sub(r"\s*\[[^\]]*\]", "", s)
    s = " ".join(s.split())
    s = re.split(r"(?<!\b[A-Z]\.)(?<!\be\.g\.)(?<!\bi\.e\.)(?<=[.!?])\s|\s[-–—]\s|[:;]\s?", s)[0].rstrip(".!? ,")
    return s


def _base_verb(w: str) -> str:
    if w in _VERBS and _VERBS[w]:
        return _VERBS[w]
    if re.search(r"(ch|sh|ss|x|z)es$", w):
        return w[:-2]
    if w.endswith("ies"):
        return w[:-3] + "y"
    return w[:-1]


def _gerund_verb(w: str) -> str:
    stem = w[:-3]
    for cand in (stem, stem + "e", stem[:-1] if len(stem) > 2 and stem[-1] == stem[-2] else ""):
        if cand in _BASE_VERBS:
            return cand
    return ""


def _name_phrase(api: Api) -> str:
    words = humanize(api.name).split()
    words = [w for w in words if w not in ("api", "v1", "v2", "v3")] or ["data"]
    if words[0] in _VERBS and _VERBS[words[0]]:
        words[0] = _VERBS[words[0]]
    if words[0] in _GET_VERBS and len(words) > 1 and words[1] not in ("a", "an", "the", "all", "my"):
        return " ".join([words[0], "the", *words[1:]])
    if words[0] in _BASE_VERBS:
        return " ".join(words)
    if words[-1] in ("exists", "exist"):
        return "check if the " + " ".join(words[:-1] or ["item"]) + " exists"
    return "get the " + " ".join(words)


def _fallback_phrase(api: Api) -> str:
    """The action from the API's name (without the provider's name); a neutral one when nothing else is left."""
    phrase = _strip_provider(_name_phrase(api), api.tool)
    words = phrase.split()
    if len(words) >= 2 and any(w not in ("a", "an", "the", "my", "all") for w in words[1:]):
        return phrase
    if len(words) == 1 and words[0] in _BASE_VERBS and words[0] != "get":
        return phrase
    return f"get the latest {humanize(api.category) or 'service'} information"


_DETERMINERS = ("a", "an", "the", "all", "this", "my", "every", "each", "information", "data", "details", "list", "one",
                "multiple", "some", "any", "current", "pending", "new", "latest", "specific", "given")


def action_phrase(api: Api) -> str:
    """A lower-case verb phrase for what the API does (from the description's first sentence, else its name),
    without the provider's name."""
    first = _clean_sentence(api.description or "")
    first = _strip_provider(first, api.tool)
    for _ in range(2):
        first = _LEAD.sub("", first)
    first = re.sub(r",?\s*\b(by default|default is|defaults to|if not)\b.*$", "", first, flags=re.I)
    first = re.sub(r"\s+and\s+(returns?|gives?|provides?|outputs?|responds?)\b.*$", "", first, flags=re.I)
    first = re.sub(r"\byour\b", "my", first, flags=re.I)
    first = re.sub(r"\b(what|that|if|when|which|where|so|as|before|after|whatever)\s+you\b", r"\1 I", first, flags=re.I)
    first = re.sub(r"\byou(?=\s+(?:have|had|want|need|can|will|would|specify|provide|supplied|supply|select|choose|"
                   r"enter|pass|like|give|gave|set)\b)", "I", first, flags=re.I)
    first = re.sub(r"\byou\b", "me", first, flags=re.I)
    words = first.split()
    latin = sum(ch.isascii() for ch in first) >= 0.9 * max(1, len(first))
    if len(first) < 8 or len(words) < 2 or _META.search(first) or not latin:
        return _fallback_phrase(api)
    lowered = [w.lower() for w in words]
    w0 = lowered[0]
    if w0 in _DEV_VERBS:
        return _fallback_phrase(api)
    if lowered[1] == "of" and w0 in ("list", "set", "count", "summary", "history", "record", "log", "view"):
        words = ["get", "the", w0, *words[1:]]  # "List of the bookable items" is a noun phrase
    elif w0 in _VERBS and _VERBS[w0]:
        words[0] = _VERBS[w0]
    elif w0 in _BASE_VERBS:
        words[0] = w0
    elif w0.endswith("ing") and _gerund_verb(w0):
        words[0] = _gerund_verb(w0)  # "Getting data about all events" -> "get data about all events"
    elif re.fullmatch(r"[a-z]{3,}s", w0) and (_base_verb(w0) in _BASE_VERBS or lowered[1] in _DETERMINERS):
        words[0] = _base_verb(w0)  # "Grabs all of ...", "Cancels pending task" -> "grab all of ...", "cancel ..."
    elif re.fullmatch(r"[a-z]{3,}", w0) and not w0.endswith(("s", "ing", "ion", "ed")) and \
            lowered[1] in _DETERMINERS[:9]:
        words[0] = w0  # an imperative ("Group the available data by ...")
    else:
        m = re.search(r"\b(?:allows?|lets?|enables?|helps?)\s+(?:me\s+|users\s+|developers\s+)?(?:to\s+)?(.+)", first,
                      re.I)
        verb_at = next((i for i, w in enumerate(lowered[:8]) if i > 0 and _VERBS.get(w)), None)
        if m and len(m.group(1).split()) >= 2:  # "The X service includes a method that allows autocomplete ..."
            words = m.group(1).split()
            if words[0].lower() not in _BASE_VERBS:
                words = ["get", *words]
        elif verb_at is not None and verb_at + 1 < len(words):  # "The simple radiation request returns detailed ..."
            words = [_VERBS[lowered[verb_at]], *words[verb_at + 1:]]
        else:  # a noun phrase ("Daily weather forecast for a city"): ask to get it
            w = words[0]
            keep = len(w) > 1 and (w.isupper() or w[1:].lower() != w[1:])  # an acronym or a CamelCase name
            det = "" if w0 in ("a", "an", "the", "all", "some", "any", "list", "information", "details") or \
                w0.isdigit() or w0.endswith("s") else "the "
            words = ["get", det + (words[0] if keep else w0), *words[1:]]
            cop = next((i for i, w in enumerate(words) if i > 2 and w.lower() in ("is", "are", "was", "were")), None)
            if cop is not None:  # "The Volume Weighted Average Price is commonly used ..." -> "get the ... price"
                words = words[:cop]
    phrase = " ".join(words)
    head, sep, _ = phrase.partition(", ")
    if sep and len(head.split()) >= 3:
        phrase = head
    if len(phrase) > _ACT_KEEP:
        phrase = phrase[:_ACT_KEEP].rsplit(" ", 1)[0]
    prev = None
    while prev != phrase:
        prev, phrase = phrase, _TRAIL.sub("", phrase).rstrip(" ,")
    content = [w for w in phrase.split()[1:] if w.lower() not in ("a", "an", "the", "all", "some", "of", "for", "to")]
    if not content or phrase.split()[-1].lower() in ("are", "is", "was", "were", "be", "following", "below") or \
            phrase.split()[0].lower() in _DEV_VERBS:
        return _fallback_phrase(api)
    return phrase


def _show(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    if isinstance(v, str):
        return " ".join(v.split())
    return json.dumps(v, ensure_ascii=False)


def _quote(v: Any) -> str:
    s = _show(v)
    return f"'{s}'" if isinstance(v, str) else s


def _country(v: Any) -> str:
    s = _show(v)
    return COUNTRY_NAMES.get(s.upper(), s) if len(s) <= 3 else s


def _language(v: Any) -> str:
    s = _show(v)
    key = s.lower()
    if key in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[key]
    if re.fullmatch(r"[a-z]{2}[-_][a-z]{2}", key) and key[:2] in LANGUAGE_NAMES:
        region = COUNTRY_NAMES.get(key[3:].upper())
        return f"{LANGUAGE_NAMES[key[:2]]} ({region.removeprefix('the ')})" if region else LANGUAGE_NAMES[key[:2]]
    return s


@dataclass
class _Clause:
    """How one parameter's value enters the sentence: ``free`` is a phrase appended to the action ("in Paris"),
    ``item`` joins the final "with ..." list ("a resolution of 13"), ``inline`` replaces a noun of the action phrase
    ("a city" -> "Paris"), ``nouns`` are the nouns it may replace."""

    free: str = ""
    item: str = ""
    inline: str = ""
    nouns: tuple[str, ...] = ()
    by: str = ""  # replaces "by <noun>" phrases ("by ID" -> "with ID 42")


def _clause(param: dict[str, Any], value: Any, rng: random.Random, others: set[str], api: Api | None = None) -> _Clause:
    """The phrasing of one (parameter, value) pair; ``others`` are the kinds of the call's other parameters."""
    spec = _spec(param)
    kind = _context_kind(spec, _api_text(api))
    v, q = _show(value), _quote(value)
    direction = _direction(spec)
    label = _label(spec, kind)
    pick = rng.choice
    if kind == "bool":
        words = [w for w in spec.tokens if w not in ("is", "has", "include", "includes", "with", "show", "only", "use",
                                                     "enable", "enabled", "get", "allow", "allowed", "do", "not")]
        thing = " ".join(words) or label
        if {"include", "includes", "with", "show"} & set(spec.tokens):
            return _Clause(free=f"including {thing}" if value else f"excluding {thing}")
        if "has" in spec.tokens:
            return _Clause(free=f"with {thing}" if value else f"without {thing}")
        return _Clause(item=f"{thing} {'enabled' if value else 'disabled'}" if rng.random() < 0.5
                       else f"{thing} set to {v}")
    if kind == "username":
        if "password" in others:
            return _Clause(free=f"as {v}", inline=f"user {v}", nouns=("user", "username", "account"))
        return _Clause(free=pick([f"for user {v}", f"for the user {v}"]), inline=f"user {v}",
                       nouns=("user", "username", "account", "profile"))
    if kind == "password":
        return _Clause(item=f"the password {v}")
    if kind == "email":
        return _Clause(free=pick([f"for {v}", f"for the address {v}"]), inline=v,
                       nouns=("email address", "email", "e-mail address", "e-mail", "address", "recipient"))
    if kind in ("lat", "lon"):
        return _Clause(item=f"{label} {v}")
    if kind == "geopoint":
        return _Clause(item=f"coordinates {v}")
    if kind == "url":
        return _Clause(free=pick([f"for {v}", f"from {v}"]), inline=v,
                       nouns=("url", "link", "web page", "webpage", "website"))
    if kind == "domain":
        return _Clause(free=f"for {v}", inline=v, nouns=("email domain", "domain", "website", "host"))
    if kind == "ip":
        return _Clause(free=pick([f"for {v}", f"for IP {v}"]), inline=v, nouns=("ip address", "ip"))
    if kind == "phone":
        return _Clause(free=f"for {v}", inline=v, nouns=("phone number", "mobile number", "number"))
    if kind == "id":
        ent = _entity(spec)
        if not ent and api is not None:  # "Players by sport ID" -> the id names a sport
            m = re.search(r"\bby (\w+) id\b", humanize(api.name))
            ent = m.group(1) if m else ""
        lab = f"{ent} ID" if ent else "ID"
        nouns = (ent,) if ent and ent not in ("user", "api") else ()
        if spec.head == "slug":
            return _Clause(free=f"for the {ent or 'item'} {v}", inline=f"the {ent} {v}" if ent else "", nouns=nouns)
        return _Clause(free=pick([f"for {lab} {v}", f"with {lab} {v}"]), inline=f"the {ent} with ID {v}" if ent else "",
                       nouns=nouns, by=f"with {lab} {v}")
    if kind == "storage":
        return _Clause(free=pick([f"in the storage {q}", f"on storage {q}"]), inline=f"storage {q}", nouns=("storage",))
    if kind == "currency":
        if direction == "start":
            return _Clause(free=f"from {v}")
        if direction == "end":
            return _Clause(free=f"to {v}")
        return _Clause(free=f"in {v}", inline=v, nouns=("currency",))
    if kind in ("coin", "symbol"):
        return _Clause(free=f"for {v}", inline=v, nouns=(
            "symbol", "stock symbol", "stock", "ticker", "company", "coin", "cryptocurrency", "asset", "instrument",
            "ticker symbol", "stock ticker symbol", "stock ticker"))
    if kind == "airport":
        if direction in ("start", "end"):
            return _Clause(free=f"{'from' if direction == 'start' else 'to'} {v}")
        return _Clause(free=f"for {v}", inline=f"{v} airport", nouns=("airport",), by="")
    if kind == "flight":
        return _Clause(free=f"for flight {v}", inline=f"flight {v}", nouns=("flight",))
    if kind == "airline":
        return _Clause(free=f"for airline {v}", inline=f"airline {v}", nouns=("airline",))
    if kind == "barcode":
        return _Clause(free=f"for barcode {v}", inline=f"barcode {v}", nouns=("barcode", "product barcode"))
    if kind == "interval":
        return _Clause(free=pick([f"at a {v} interval", f"with a {v} interval"]))
    if kind == "language":
        lang = _language(value)
        if direction == "start":
            return _Clause(free=f"from {lang}")
        if direction == "end":
            return _Clause(free=pick([f"into {lang}", f"to {lang}"]))
        return _Clause(free=f"in {lang}", inline=lang, nouns=("language",))
    if kind == "country":
        c = _country(value)
        return _Clause(free=pick([f"in {c}", f"for {c}"]), inline=c, nouns=("country", "region", "market"))
    if kind == "city":
        return _Clause(free=pick([f"in {v}", f"for {v}"]), inline=v,
                       nouns=("city", "location", "place", "town", "area", "destination"))
    if kind == "address":
        return _Clause(free=f"for {v}", inline=v, nouns=("address", "street address", "location"))
    if kind == "zip":
        return _Clause(free=f"for {label} {v}", inline=f"{label} {v}", nouns=("postal code", "zip code", "postcode"))
    if kind == "state":
        return _Clause(free=f"in {v}", inline=v, nouns=("state",))
    if kind == "timezone":
        return _Clause(free=f"in the {v} time zone")
    if kind in ("date", "year") and direction and not ({f"{kind}:start", f"{kind}:end"} <= others):
        direction = ""  # a lone "departure date" is a day, not the start of a range
    if kind == "date":
        if direction == "start":
            return _Clause(free=pick([f"from {v}", f"starting {v}"]))
        if direction == "end":
            return _Clause(free=pick([f"until {v}", f"to {v}"]))
        return _Clause(free=pick([f"on {v}", f"for {v}"]), inline=v,
                       nouns=("date", "day", "given date", "departure date", "past date", "travel date",
                              "specific date"))
    if kind == "year":
        if direction == "start":
            return _Clause(free=f"from {v}")
        if direction == "end":
            return _Clause(free=f"until {v}")
        return _Clause(free=pick([f"in {v}", f"for {v}"]), inline=v, nouns=("year", "season"))
    if kind == "month":
        name = _MONTHS[value - 1] if isinstance(value, int) and 1 <= value <= 12 else v
        return _Clause(free=f"for {name}")
    if kind == "page":
        return _Clause(free=pick(["on the first page", "on page 1"]) if value == 1 else f"on page {v}")
    if kind == "ordinal":
        return _Clause(free=f"for {label} {v}")
    if kind == "limit":
        noun = " ".join(t for t in spec.tokens if t not in _LIMIT | {"page", "per", "number", "of"}) or "results"
        noun = noun if noun.endswith("s") else noun + "s"
        if spec.has("perpage", "per", "pagesize") or spec.joined in ("size", "pagesize"):
            return _Clause(free=f"with {v} {noun if noun != 'results' else 'items'} per page")
        return _Clause(free=pick([f"limited to {v} {noun}", f"with up to {v} {noun}", f"showing {v} {noun}"]))
    if kind == "offset":
        if value in (0, "0"):
            return _Clause(free=pick(["starting from the beginning", "starting at offset 0"]))
        return _Clause(free=pick([f"starting at offset {v}", f"skipping the first {v} results"]))
    if kind in ("path", "filename"):
        return _Clause(free=pick([f"for {v}", f"at {v}"]), inline=v,
                       nouns=("file or folder", "file", "folder", "path", "document", "object"))
    if kind == "folder":
        return _Clause(free=pick([f"in {v}", f"in the folder {v}"]), inline=f"the folder {v}",
                       nouns=("folder", "directory"))
    if kind == "name":
        mods = [t for t in spec.tokens if t not in ("name", "title", "names", "full", "display")]
        noun = " ".join(mods)
        if {"from", "sender"} & set(mods):
            return _Clause(free=f"from {v}")
        free = pick([f"named {v}", f"called {v}"]) if not mods else f"for the {noun} {v}"
        return _Clause(free=free, inline=f"{noun} {v}".strip() if mods else v,
                       nouns=tuple(n for n in (noun,) if n) or ("person", "player", "artist", "author", "team",
                                                               "company", "product", "movie", "song", "book"))
    if kind == "text":
        return _Clause(free=pick([f"for the text {q}", f"for this text: {q}"]), inline=f"the text {q}",
                       nouns=("text", "sentence", "message", "piece of text", "some text", "content", "review",
                              "comment", "given text", "input text"))
    if kind == "subject":
        return _Clause(item=f"the subject {q}")
    if kind == "search":
        return _Clause(free=pick([f"for {q}", f"about {q}", f"matching {q}"]), inline=f"the query {q}",
                       nouns=("query", "search query", "keyword", "search term", "term", "phrase"))
    if kind == "category":
        if spec.has("genre", "genres"):
            return _Clause(free=f"in the {v} genre")
        if spec.has("tag", "tags"):
            return _Clause(free=f"tagged {q}")
        if spec.has("topic", "topics", "interest"):
            return _Clause(free=f"about {v}", inline=v, nouns=("topic",))
        return _Clause(free=f"in the {v} category", inline=f"the {v} category", nouns=("category",))
    if kind == "sort":
        return _Clause(free=f"sorted by {v}")
    if kind == "order":
        word = {"asc": "ascending", "desc": "descending"}.get(v.lower(), v)
        return _Clause(free=f"in {word} order")
    if kind == "format":
        return _Clause(free=pick([f"in {v} format", f"as {v.upper() if len(v) <= 4 else v}"]))
    if kind == "units":
        return _Clause(free=f"in {v} units")
    if kind == "color":
        return _Clause(item=f"the color {v}")
    if kind == "status":
        return _Clause(free=f"with status {q}")
    if kind in ("money", "count", "radius", "age", "days", "level") or spec.ptype == "NUMBER":
        rest = " ".join(t for t in spec.tokens if t not in ("min", "max", "minimum", "maximum")) or label
        if kind == "money" and direction in ("start", "end"):
            return _Clause(free=f"priced {'above' if direction == 'start' else 'under'} {v}")
        if direction == "start" and spec.has("min", "minimum"):
            return _Clause(item=f"a minimum {rest} of {v}")
        if direction == "end" and spec.has("max", "maximum"):
            return _Clause(item=f"a maximum {rest} of {v}")
        if kind == "radius":
            return _Clause(free=f"within {v} {'km' if 'km' in spec.desc or 'kilomet' in spec.desc else 'miles'}"
                           if isinstance(value, (int, float)) else f"within {v}")
        if kind == "days" and spec.has("days"):
            if value == 1:
                return _Clause(free=pick(["for the next day", "for 1 day"]))
            return _Clause(free=pick([f"for the next {v} days", f"over {v} days"]))
        if kind == "count" and isinstance(value, (int, float)):
            return _Clause(free=f"for {v} {rest[:-1] if value == 1 and rest.endswith('s') else rest}")
        if rest.endswith("s") and not rest.endswith("ss"):
            return _Clause(item=f"{rest} set to {v}")
        return _Clause(item=f"{'an' if rest[:1] in 'aeiou' else 'a'} {rest} of {v}")
    return _Clause(item=f"the {label} {q if (isinstance(value, str) and ' ' in value) else v}")


def _weave(action: str, cl: _Clause) -> str | None:
    """``action`` with one of the clause's nouns replaced by the value ("a city" -> "Paris"); None if none found."""
    if cl.inline and cl.nouns:
        alt = "|".join(re.escape(n) for n in sorted(cl.nouns, key=lambda n: (-len(n), n)))
        pat = re.compile(rf"\b(?:a|an|the|any|one|some)\s+(?:(?:given|specific|specified|particular|certain|single|"
                         rf"provided|desired|chosen)\s+)?(?:{alt})(?:\s+(?:name|code|symbol|number))?\b"
                         rf"(?:\s+by\s+(?:its\s+|their\s+|the\s+|an?\s+)?[\w-]+(?:\s+(?:code|name|number|id))?)?"
                         rf"(?=\s*$|\s*[,.;:!?)]|\s+(?:for|of|in|on|by|with|and|or|to|from|at|that|which|who|using|"
                         rf"including|based|via|into|as|is|are|if|exists|whose|within|near|over|after|before|"
                         rf"between)\b)", re.I)
        m = pat.search(action)
        before = action[:m.start()].split() if m else []
        # "get a city" stays ("get Paris" is no task)
        if m and not (len(before) == 1 and before[0].lower() in _GET_VERBS):
            return action[:m.start()] + cl.inline + action[m.end():]
    if cl.by:
        m = re.search(r"\b(?:by(?:\s+(?:providing|specifying|using|passing))?|given|using|for|with)\s+"
                      r"(?:(?:its|their|the|an?|his|her)\s+)?"
                      r"(?:(?:given|specific|specified|particular|certain|unique)\s+)?(?:[\w'-]+\s+)?"
                      r"(?:id|ids|identifier)\b", action, re.I)
        if m:
            return action[:m.start()] + cl.by + action[m.end():]
    return None


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


_OTHER_TEMPLATES = ("I want to {act}{c}.", "I want to {act}{c}.", "I'd like to {act}{c}.", "Can you {act}{c}?",
                    "Please {act}{c}.", "I need to {act}{c}.", "Help me {act}{c}.", "Could you {act}{c} for me?",
                    "{Act}{c}.")
_GET_TEMPLATES = ("I want to {act}{c}.", "I want to {act}{c}.", "Show me {np}{c}.", "Can you get me {np}{c}?",
                  "I'd like to see {np}{c}.", "Please {act}{c}.", "I need {np}{c}.", "Could you look up {np}{c}?",
                  "{Act}{c}.")
_FIND_TEMPLATES = ("I want to {act}{c}.", "I want to {act}{c}.", "Find {np}{c}.", "Help me find {np}{c}.",
                   "Can you search for {np}{c}?", "I'm looking for {np}{c}.", "Please {act}{c}.")


def _sentence(action: str, tail: str, rng: random.Random) -> str:
    words = action.split()
    verb = words[0].lower() if words else ""
    rest = " ".join(words[1:])
    if verb in _GET_VERBS and rest:
        tpl, np = rng.choice(_GET_TEMPLATES), rest
    elif verb in _FIND_VERBS and rest and not re.match(r"(and|or|,)\b", rest):
        tpl, np = rng.choice(_FIND_TEMPLATES), re.sub(r"^(for|up)\s+", "", rest)
    elif verb == "look" and rest.startswith("up "):
        tpl, np = rng.choice(_FIND_TEMPLATES), rest[3:]
    else:
        tpl, np = rng.choice(_OTHER_TEMPLATES), rest
    text = tpl.format(act=action, Act=action[:1].upper() + action[1:], np=np, c=tail)
    return " ".join(text.split())


def render_instruction(action: str, api: Api, params: dict[str, Any], rng: random.Random) -> str:
    """A user's sentence for ``action`` with the values of ``params`` woven in (never the provider's name)."""
    specs = {p["name"]: p for p in api.parameters}
    kinds: set[str] = set()
    for k in params:
        sp = _spec(specs.get(k, {"name": k}))
        kind = _context_kind(sp, _api_text(api))
        kinds |= {kind, f"{kind}:{_direction(sp)}"}
    action = " ".join(action.split()).rstrip(".!? ")
    if api.tool and len(api.tool.strip()) >= 2:  # the action never names the provider (values are kept verbatim)
        action = _strip_provider(action, api.tool, base=False) or action
    free: list[str] = []
    items: list[str] = []
    if kinds & {"days", "limit"}:  # the value replaces the documented bound ("for up to 16 days")
        action = re.sub(r"\s+(?:for\s+)?(?:up to|the next|a maximum of|at most|max(?:imum)?)\s+\d+\s+\w+", "", action)
    order = sorted(params, key=lambda k: _direction(_spec(specs.get(k, {"name": k}))) != "start")  # "from X ... to Y"
    for k in order:
        val = params[k]
        cl = _clause(specs.get(k, {"name": k}), val, rng, kinds, api)
        woven = _weave(action, cl)
        if woven is not None:
            action = woven
            continue
        if cl.free:
            free.append(cl.free)
        else:
            items.append(cl.item)
    tail = (" " + " ".join(free)) if free else ""
    if items:
        tail += (", with " if len(free) > 1 else " with ") + _join(items)
    text = _sentence(action, tail, rng)
    text = re.sub(r"([.!?])'([.?])$", r"\1'", text)
    return text[:1].upper() + text[1:]


MAX_OPTIONAL = 3  # optional parameters one generated instruction states at most (official calls state few)


def template_instruction(api: Api, rng: random.Random, action_from: Api | None = None) -> Instruction:
    """One generated (instruction, parameters) for ``api``; the action phrase may come from another API of the same
    group (``action_from``) so that a query does not echo the preferred provider's own wording."""
    ctx = _Ctx.of(api)
    params: dict[str, Any] = {}
    for p in api.required_parameters:
        params[p["name"]] = _choose(p, ctx, rng, required=True)[1]
    n_optional = 0
    for p in api.optional_parameters:
        filled, value = _choose(p, ctx, rng, required=False)
        if filled and n_optional < MAX_OPTIONAL:  # the draw happens anyway: values do not depend on the cap
            params[p["name"]] = value
            n_optional += 1
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
