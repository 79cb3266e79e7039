"""Step 1, tool understanding: for each documented API a functionality description and a description (with a 1-5
score) of six non-functional attributes.

The offline LLM derives everything from the docs with templates:

- usability: required parameters without a default (fewer is easier), undocumented parameters;
- accessibility: the tool's ``pricing`` (FREE > FREEMIUM > PAID) or credential-like required parameters;
- integrability: standard, consistently typed parameters, parameter count;
- reliability: ToolBench's ``score.avgSuccessRate`` / ``avgServiceLevel`` when the tool has them;
- cost/limits: the tool's ``pricing``;
- documentation quality: description length, described parameters, examples.

Where the docs say nothing about an attribute (no pricing, no service-level score: e.g. the official test set's
docs), the score is a *simulated provider trait*: a deterministic draw from a hash of (provider, attribute), marked
``"derived": false`` so the manifest can report how much of the preference signal is simulated. A model LLM
(``openai``/``hf``) is asked for the same JSON; invalid replies fall back to the template (counted).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from tqdm.auto import tqdm

from .catalog import Api
from .grouping import humanize
from .llm import ChatRequest, SynthLLM, ask_json

ATTRIBUTES: tuple[str, ...] = ("usability", "accessibility", "integrability", "reliability", "cost", "documentation")
STANDARD_TYPES = {"STRING", "NUMBER", "BOOLEAN", "ENUM", "DATE (YYYY-MM-DD)"}
_PRICING = {"FREE": 5.0, "FREEMIUM": 4.0, "PAID": 2.0}
_SECRET_WORDS = ("key", "token", "password", "secret", "auth")

SYSTEM_PROMPT = (
    "You analyse web APIs for a tool-selection benchmark. Reply with one JSON object only, no prose. Keys: "
    '"functionality" (one sentence: what the API does, provider-neutral) and "attributes": an object with the keys '
    + ", ".join(f'"{a}"' for a in ATTRIBUTES)
    + ', each {"score": an integer 1-5 (5 = best for the user), "description": one short sentence}. '
    "cost: 5 = free / generous limits; reliability: 5 = highly dependable."
)


@dataclass
class Understanding:
    """What step 1 produced for one API."""

    tool_name: str
    functionality: str
    attributes: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin: str = "template"  # template | model | fallback

    def scores(self) -> np.ndarray:
        return np.array([float(self.attributes[a]["score"]) for a in ATTRIBUTES], dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"functionality": self.functionality, "attributes": self.attributes, "understanding_origin": self.origin}


def _latent(provider: str, attribute: str) -> float:
    """A deterministic simulated trait in [1, 5] for what the docs do not say."""
    h = int(hashlib.sha256(f"{provider}\x00{attribute}".encode("utf-8")).hexdigest()[:8], 16)
    return round(1.0 + 4.0 * h / 0xFFFFFFFF, 2)


def _clip(x: float) -> float:
    return float(min(5.0, max(1.0, round(x, 2))))


def functionality_text(api: Api) -> str:
    """A provider-neutral one-line functionality description from the docs."""
    desc = " ".join((api.description or "").split())
    first = desc.split(". ")[0].rstrip(".") if desc else ""
    name = humanize(api.name)
    req = [p["name"] for p in api.required_parameters]
    opt = [p["name"] for p in api.optional_parameters]
    text = first[:200] if first else f"Performs '{name}'"
    ins = []
    if req:
        ins.append("requires " + ", ".join(req[:6]))
    if opt:
        ins.append("optionally takes " + ", ".join(opt[:6]))
    return f"{text} ({name}; {'; '.join(ins)})." if ins else f"{text} ({name})."


def template_understanding(api: Api) -> Understanding:
    """The offline LLM's tool understanding (see the module docstring)."""
    params = api.parameters
    pricing = str(api.meta.get("pricing", "")).upper()
    score = api.meta.get("score", {}) or {}
    attrs: dict[str, dict[str, Any]] = {}

    no_default = [p for p in api.required_parameters if p.get("default") in ("", None)]
    undocumented = [p for p in params if not str(p.get("description", "")).strip()]
    s = 5.0 - min(3.0, float(len(no_default))) - (0.5 if undocumented else 0.0)
    attrs["usability"] = {"score": _clip(s), "derived": True, "description":
                          f"{len(api.required_parameters)} required parameter(s), {len(no_default)} without a default; "
                          f"{len(undocumented)} parameter(s) undocumented."}

    secret = [p["name"] for p in api.required_parameters if any(w in p["name"].lower() for w in _SECRET_WORDS)]
    if pricing in _PRICING:
        attrs["accessibility"] = {"score": _clip(_PRICING[pricing] - (1.0 if secret else 0.0)), "derived": True,
                                  "description": f"Pricing plan {pricing}" + (f"; needs credentials ({', '.join(secret)})." if secret else ".")}
    elif secret:
        attrs["accessibility"] = {"score": 2.0, "derived": True, "description": f"Needs credentials ({', '.join(secret)})."}
    else:
        attrs["accessibility"] = {"score": _latent(api.provider, "accessibility"), "derived": False,
                                  "description": "Access terms not documented (simulated provider trait)."}

    odd = [p["name"] for p in params if str(p.get("type", "")) not in STANDARD_TYPES]
    s = 5.0 - (1.0 if odd else 0.0) - (1.0 if len(params) > 6 else 0.0) - (0.5 if len(params) > 3 else 0.0)
    attrs["integrability"] = {"score": _clip(s), "derived": True, "description":
                              f"{len(params)} parameter(s)" + (f"; non-standard types for {', '.join(odd[:3])}." if odd else "; standard types.")}

    rate = score.get("avgSuccessRate", score.get("avgServiceLevel"))
    if isinstance(rate, (int, float)):
        latency = score.get("avgLatency")
        attrs["reliability"] = {"score": _clip(1.0 + 4.0 * float(rate) / 100.0 - (0.5 if isinstance(latency, (int, float)) and latency > 1500 else 0.0)),
                                "derived": True, "description": f"Average success rate {rate}%" +
                                (f", latency {latency} ms." if latency is not None else ".")}
    else:
        attrs["reliability"] = {"score": _latent(api.provider, "reliability"), "derived": False,
                                "description": "Service level not documented (simulated provider trait)."}

    if pricing in _PRICING:
        attrs["cost"] = {"score": _PRICING[pricing], "derived": True, "description": f"Pricing plan {pricing}."}
    else:
        attrs["cost"] = {"score": _latent(api.provider, "cost"), "derived": False,
                         "description": "Pricing and limits not documented (simulated provider trait)."}

    n = len((api.description or "").strip())
    s = 1.0 + (n >= 20) + (n >= 60) + (n >= 120) + (0.5 if params and not undocumented else 0.0) + (0.5 if api.examples else 0.0)
    attrs["documentation"] = {"score": _clip(s), "derived": True, "description":
                              f"Description of {n} characters; {len(params) - len(undocumented)}/{len(params)} parameters described"
                              + ("; has an example." if api.examples else ".")}
    return Understanding(api.full_name, functionality_text(api), attrs, origin="template")


def _request(api: Api) -> ChatRequest:
    doc = {"api": api.full_name, "description": api.description, "tool_description": api.tool_description[:300],
           "required_parameters": api.required_parameters, "optional_parameters": api.optional_parameters,
           **({"pricing": api.meta["pricing"]} if "pricing" in api.meta else {}),
           **({"service_level": api.meta["score"]} if api.meta.get("score") else {})}
    return ChatRequest.of(api.full_name, SYSTEM_PROMPT, json.dumps(doc, ensure_ascii=False)[:4000])


def _validate(obj: Any, template: Understanding) -> Understanding | None:
    if not isinstance(obj, dict):
        return None
    func = obj.get("functionality")
    attrs = obj.get("attributes")
    if not isinstance(func, str) or not func.strip() or len(func) > 500 or not isinstance(attrs, dict):
        return None
    out: dict[str, dict[str, Any]] = {}
    for a in ATTRIBUTES:
        v = attrs.get(a)
        if not isinstance(v, dict):
            return None
        s = v.get("score")
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 1 <= s <= 5:
            return None
        d = v.get("description", "")
        out[a] = {"score": float(s), "derived": True, "description": str(d)[:300]}
    return Understanding(template.tool_name, " ".join(func.split()), out, origin="model")


def understand(apis: Sequence[Api], llm: SynthLLM, progress: bool = True, limit: int | None = None
               ) -> tuple[dict[str, Understanding], dict[str, int]]:
    """Tool understanding for every documented API; ``limit`` caps how many go to a model (the rest: templates).

    Returns ``{full name: Understanding}`` and counts ``{template, model, fallback, ...}``.
    """
    templates = {a.full_name: template_understanding(a) for a in tqdm(apis, desc="tool understanding", disable=not progress)}
    counts = {"apis": len(apis), "model": 0, "fallback": 0, "template": len(apis)}
    if not llm.is_model or not apis:
        return templates, counts
    asked = list(apis)[: limit if limit is not None else len(apis)]
    values, c = ask_json(llm, [_request(a) for a in asked],
                         lambda obj, i: _validate(obj, templates[asked[i].full_name]), desc="tool understanding (llm)")
    for a, v in zip(asked, values):
        if v is not None:
            templates[a.full_name] = v
        else:
            templates[a.full_name].origin = "fallback"
    counts.update(model=c["valid"], fallback=c["fallback"], template=len(apis) - len(asked),
                  invalid_json=c["invalid_json"], invalid_content=c["invalid_content"], reasked=c["reasked"])
    return templates, counts


def plan_requests(apis: Sequence[Api], limit: int | None = None) -> list[ChatRequest]:
    """The requests :func:`understand` would send (for a dry run)."""
    return [_request(a) for a in list(apis)[: limit if limit is not None else len(apis)]]


def provider_profiles(apis: Sequence[Api], understood: dict[str, Understanding]) -> dict[str, np.ndarray]:
    """Each provider's attribute vector: the mean of its documented APIs' scores (order of :data:`ATTRIBUTES`)."""
    acc: dict[str, list[np.ndarray]] = {}
    for a in apis:
        u = understood.get(a.full_name)
        if u is not None:
            acc.setdefault(a.provider, []).append(u.scores())
    return {p: np.mean(v, axis=0) for p, v in sorted(acc.items())}


def derived_share(understood: dict[str, Understanding]) -> dict[str, float]:
    """Per attribute, the share of APIs whose score comes from the docs (the rest are simulated traits)."""
    n = max(1, len(understood))
    return {a: round(sum(bool(u.attributes[a].get("derived")) for u in understood.values()) / n, 4) for a in ATTRIBUTES}
