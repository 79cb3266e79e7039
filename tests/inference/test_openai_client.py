"""The openai predictor against a real HTTP server on 127.0.0.1 (started by the test, bounded, stops by itself)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler

import pytest

from tests.loopback import LoopbackServer

from petool_lib.core.data import SETTINGS, entry_from_dict
from petool_lib.harness.evaluate import evaluate_rows
from petool_lib.inference.openai_client import RESPONSE_FORMATS, OpenAIPredictor, call_schema, response_format_body
from petool_lib.inference.predictions import main, make_predictor, predict
from petool_lib.core.prompts import render_prompt

TOOLS = [
    {"tool_name": "<Search>.<Alpha>.<find>", "tool_description": "find things",
     "required_parameters": [{"name": "q", "type": "STRING", "description": "query"}], "optional_parameters": []},
    {"tool_name": "<Search>.<Beta>.<find>", "tool_description": "find things too",
     "required_parameters": [{"name": "q", "type": "STRING", "description": "query"}], "optional_parameters": []},
]
GOOD = json.dumps({"tool_name": "<Search>.<Alpha>.<find>", "parameters": {"q": "cats"}})
MAX_REQUESTS = 200  # the server refuses to serve more than this: no unbounded loops


def make_entry(eid: int, query: str) -> dict:
    hist = [{"instruction": "find dogs", "tool_call": {"tool_name": TOOLS[0]["tool_name"], "parameters": {"q": "dogs"}}}]
    raw = {
        "query": query, "apis_candidate": json.dumps(TOOLS),
        "api_call_ground_truth": {"tool_name": TOOLS[0]["tool_name"], "parameters": {"q": "cats"}},
        "api_ground_truth": {"category_name": "Search", "tool_name": "Alpha", "api_name": "find"},
        "func": "1", "apis_same_func": [{"category_name": "Search", "tool_name": n, "api_name": "find"}
                                          for n in ("Alpha", "Beta")],
        "tool_comb": [], "num_tools_combined": "2", "history_length": 1, "entry_id": eid,
    }
    for s in SETTINGS:
        items = [dict(h, rating=1) for h in hist] if s == "ratings" else hist
        raw[f"instruction_{s}"] = render_prompt(s, items, TOOLS)
    return raw


class Server(LoopbackServer):
    """A tiny chat-completions server whose behaviour depends on the user message's first word."""

    def __init__(self, delay: float = 0.05) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: list[dict] = []  # every request body, as received
        self.in_flight = 0
        self.max_in_flight = 0
        self.total = 0
        self.lock = threading.Lock()
        self.delay = delay
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                query = body["messages"][-1]["content"]
                word = query.split()[0]
                with outer.lock:
                    outer.bodies.append(body)
                    outer.total += 1
                    outer.calls[query] += 1
                    n = outer.calls[query]
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                    over = outer.total > MAX_REQUESTS
                try:
                    time.sleep(outer.delay)
                    fast_retry = {"retry-after-ms": "10"}
                    if over:
                        self._send(400, b'{"error": {"message": "request budget exhausted"}}', {"x-should-retry": "false"})
                    elif word == "RATE" and n == 1:
                        self._send(429, b'{"error": {"message": "slow down", "type": "rate_limit"}}', fast_retry)
                    elif word == "FAIL":
                        self._send(500, b'{"error": {"message": "boom"}}', fast_retry)
                    elif word == "MALFORMED":
                        self._send(200, json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                                    "model": body["model"]}).encode())
                    elif word == "GARBAGE":
                        self._send(200, b"this is not json")
                    else:
                        self._send(200, json.dumps({
                            "id": "c1", "object": "chat.completion", "created": 0, "model": body["model"],
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": GOOD}}],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                        }).encode())
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

        super().__init__(Handler)


QUERIES = ["OK find cats", "RATE find cats", "FAIL find cats", "MALFORMED find cats", "GARBAGE find cats",
           "OK again cats", "OK more cats", "OK last cats"]


@pytest.fixture()
def entries():
    return [entry_from_dict(make_entry(100 + i, q)) for i, q in enumerate(QUERIES)]


def test_retries_failures_and_malformed_replies(entries, tmp_path):
    with Server() as srv:
        predictor = OpenAIPredictor("test-model", base_url=srv.url, api_key="k", concurrency=3, max_retries=2,
                                    timeout=10)
        rows = predict(entries, predictor, "preferred", "generate", cache=tmp_path / "c.jsonl", progress=False)
        calls = dict(srv.calls)
        max_in_flight = srv.max_in_flight
    by_query = {e.query: r for e, r in zip(entries, rows)}
    assert len(rows) == len(entries)  # nothing dropped
    assert by_query["OK find cats"]["response"] == GOOD and by_query["OK find cats"]["error"] is None
    assert by_query["RATE find cats"]["response"] == GOOD and by_query["RATE find cats"]["error"] is None
    assert calls["RATE find cats"] == 2  # one 429, then success
    fail = by_query["FAIL find cats"]
    assert fail["response"] == "" and "500" in fail["error"]
    assert calls["FAIL find cats"] == 3  # the first try + max_retries, then given up
    for q in ("MALFORMED find cats", "GARBAGE find cats"):
        assert by_query[q]["response"] == "" and by_query[q]["error"], by_query[q]
    assert "MalformedReply" in by_query["MALFORMED find cats"]["error"]
    assert 1 < max_in_flight <= 3  # concurrent, and bounded
    summary = evaluate_rows(entries, rows, ["preferred"])["preferred"]
    assert summary["n"] == len(entries)  # failures stay in the denominator
    assert summary["tool_correct"] == 5 and summary["errors"]["invalid_format"] == 3


def test_cache_resumes_and_retries_only_failures(entries, tmp_path):
    cache = tmp_path / "c.jsonl"
    with Server(delay=0.0) as srv:
        predictor = OpenAIPredictor("test-model", base_url=srv.url, api_key="k", concurrency=2, max_retries=0,
                                    timeout=10)
        first = predict(entries, predictor, "preferred", "generate", cache=cache, progress=False)
        before = srv.total
        second = predict(entries, predictor, "preferred", "generate", cache=cache, progress=False)
        again = srv.total - before
    failed = [e.query for e, r in zip(entries, first) if r["error"]]
    assert sorted(failed) == ["FAIL find cats", "GARBAGE find cats", "MALFORMED find cats", "RATE find cats"]
    assert again == len(failed)  # successes came from the cache; failed requests were tried again
    rate = QUERIES.index("RATE find cats")
    assert second[rate]["response"] == GOOD and second[rate]["error"] is None  # the retried 429 now succeeds
    assert [r["response"] for i, r in enumerate(first) if i != rate] == [
        r["response"] for i, r in enumerate(second) if i != rate]


def test_cli_with_endpoint_from_environment(entries, tmp_path, monkeypatch):
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps([e.to_dict() for e in entries]))
    out = tmp_path / "pred.jsonl"
    with Server(delay=0.0) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        code = main(["--test", str(test_file), "--predictor", "openai", "--model", "m", "--mode", "generate",
                     "--setting", "p,r", "--out", str(out), "--max-retries", "1", "--quiet"])
    assert code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 * len(entries)
    assert {r["setting"] for r in rows} == {"preferred", "ratings"}
    assert all(r["mode"] == "generate" and "latency_s" in r and "trimmed" in r for r in rows)
    assert sum(1 for r in rows if r["error"]) == 6


def test_openai_rejects_other_modes(entries):
    predictor = OpenAIPredictor("m", base_url="http://127.0.0.1:9/v1", api_key="k")
    with pytest.raises(ValueError, match="only mode 'generate'"):
        predictor.run([], "rank")
    with pytest.raises(ValueError, match="supports only mode"):
        predict(entries, predictor, "preferred", "rank", progress=False)  # refused before any request


def test_deprecated_backend_flag_still_selects_the_endpoint(entries, tmp_path, monkeypatch, capsys):
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps([e.to_dict() for e in entries[:1]]))
    out = tmp_path / "pred.jsonl"
    with Server(delay=0.0) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        code = main(["--test", str(test_file), "--backend", "openai", "--model", "m", "--mode", "generate",
                     "--setting", "p", "--out", str(out), "--quiet"])
        served = srv.total
    assert code == 0 and served == 1
    assert "--backend is deprecated; use --predictor" in capsys.readouterr().err
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["backend"] == "openai" and row["response"] == GOOD


def test_make_predictor_kinds():
    with pytest.raises(ValueError, match="hf predictor only"):
        make_predictor("openai", "m", adapter="some/dir")
    with pytest.raises(ValueError, match="unknown predictor"):
        make_predictor("vllm", "m")


def test_call_schema_is_the_entrys_candidates(entries):
    schema = call_schema(entries[0])
    assert schema["properties"]["tool_name"] == {"type": "string", "enum": [t["tool_name"] for t in TOOLS]}
    assert schema["properties"]["parameters"] == {"type": "object"}
    assert schema["required"] == ["tool_name", "parameters"] and schema["additionalProperties"] is False
    assert response_format_body("none", entries[0]) is None
    assert response_format_body("json_object", entries[0]) == {"type": "json_object", "schema": schema}
    assert response_format_body("json_schema", entries[0]) == {
        "type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema}}
    with pytest.raises(ValueError, match="unknown response format"):
        response_format_body("grammar", entries[0])
    with pytest.raises(ValueError, match="unknown response format"):
        OpenAIPredictor("m", base_url="http://127.0.0.1:9/v1", api_key="k", response_format="grammar")


@pytest.mark.parametrize("kind", RESPONSE_FORMATS)
def test_request_body_carries_the_response_format(entries, tmp_path, kind):
    ok = [e for e in entries if e.query.startswith("OK")][:2]
    with Server(delay=0.0) as srv:
        predictor = OpenAIPredictor("m", base_url=srv.url, api_key="k", max_retries=0, timeout=10,
                                    max_tokens=64, response_format=kind)
        rows = predict(ok, predictor, "preferred", "generate", progress=False)
        bodies = list(srv.bodies)
    assert len(bodies) == len(ok) and all(r["response"] == GOOD for r in rows)
    for body in bodies:
        assert body["max_tokens"] == 64 and body["temperature"] == 0.0
        if kind == "none":
            assert "response_format" not in body  # the default request is the one sent before the option existed
        else:
            assert body["response_format"] == response_format_body(kind, ok[0])
    if kind == "none":
        assert predictor.decoding_key("generate") == {"max_tokens": 64, "temperature": 0.0}  # old cache keys
    else:
        assert predictor.decoding_key("generate")["response_format"] == kind


def test_response_format_is_part_of_the_cache_key(entries, tmp_path):
    ok = [e for e in entries if e.query.startswith("OK")][:2]
    cache = tmp_path / "c.jsonl"
    with Server(delay=0.0) as srv:
        for kind in ("none", "json_schema", "json_schema"):
            predictor = OpenAIPredictor("m", base_url=srv.url, api_key="k", max_retries=0, timeout=10,
                                        response_format=kind)
            predict(ok, predictor, "preferred", "generate", cache=cache, progress=False)
        total = srv.total
    assert total == 2 * len(ok)  # json_schema is not served from none's cache; its rerun is


def test_cli_response_format_reaches_the_request_and_the_metrics(entries, tmp_path, monkeypatch):
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps([e.to_dict() for e in entries if e.query.startswith("OK")]))
    out, metrics = tmp_path / "pred.jsonl", tmp_path / "pred.metrics.json"
    with Server(delay=0.0) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        code = main(["--test", str(test_file), "--predictor", "openai", "--model", "m", "--mode", "generate",
                     "--setting", "p", "--response-format", "json_schema", "--out", str(out), "--metrics", str(metrics),
                     "--quiet"])
        bodies = list(srv.bodies)
    assert code == 0 and len(bodies) == 4
    assert all(b["response_format"]["type"] == "json_schema" for b in bodies)
    m = json.loads(metrics.read_text())
    assert m["config"]["response_format"] == "json_schema" and m["evaluation"]["paper"]["preferred"]["n"] == 4


def test_response_format_is_refused_for_the_hf_predictor():
    with pytest.raises(ValueError, match="openai predictor only"):
        make_predictor("hf", "tiny", response_format="json_schema")
