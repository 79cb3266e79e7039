"""A synthesis run that asked for a model LLM and got none fails fast with one line naming the endpoint, instead of
quietly shipping a dataset made by the offline templates; with ``--allow-fallback`` it goes on and says, in its last
line and in the manifest, how many items fell back and why (connection errors labelled as such)."""

from __future__ import annotations

import json
import re
import socket
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from tests.loopback import LoopbackServer

from petool_lib.synthesis.cli import main
from petool_lib.synthesis.llm import ChatRequest, OpenAILLM, ask_json


@pytest.fixture
def dead_url() -> str:
    """The base URL of a local port nobody listens on (bound, then closed): connections are refused at once."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def endpoint(dead_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_BASE_URL", dead_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    return dead_url


def _args(out: Path, cache: Path, *extra: str) -> list[str]:
    return ["--tools", "sample", "--out", str(out), "--llm", "openai", "--model", "m", "--train", "4", "--test", "2",
            "--embedding", "tfidf", "--cache-dir", str(cache), "--no-progress", *extra]


def test_dead_endpoint_fails_fast_naming_the_base_url(endpoint: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    t = time.perf_counter()
    assert main(_args(tmp_path / "out", tmp_path / "cache")) == 2
    assert time.perf_counter() - t < 15  # one refused connection, no retries (was ~62 s per request)
    err = capsys.readouterr().err
    assert re.fullmatch(rf"error: llm openai: cannot connect to {re.escape(endpoint)} \(ConnectError: .*Connection "
                        r"refused\); start the server or fix OPENAI_BASE_URL, or pass --allow-fallback to use the "
                        r"offline templates\n", err), err
    assert not (tmp_path / "out").exists()  # no dataset made of templates


def test_allow_fallback_counts_and_labels_what_fell_back(endpoint: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    t = time.perf_counter()
    assert main(_args(tmp_path / "out", tmp_path / "cache", "--allow-fallback")) == 0
    assert time.perf_counter() - t < 30
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    fb, u, i = m["llm"]["fallback"], m["llm"]["tool_understanding"], m["llm"]["instructions"]
    asked = m["llm"]["plan"]["total"]["requests"]
    assert fb["allowed"] is True and m["parameters"]["allow_fallback"] is True
    assert fb["items"] == fb["tool_understanding"] + fb["instructions"] == asked  # every model item fell back
    assert fb["failed_requests"] == {"connection_error": asked} and endpoint in fb["endpoint_unreachable"]
    assert u["invalid_json"] == 0 and u["reasked"] == 0 and i["llm_failed"] == fb["instructions"]  # not invalid_json
    assert m["llm"]["stats"]["retries"] == 0 and m["llm"]["stats"]["api_calls"] == 0
    out, err = capsys.readouterr()
    last = err.strip().splitlines()[-1]
    assert last == (f"warning: {asked} items fell back to the offline templates (tool understanding "
                    f"{fb['tool_understanding']}, instruction APIs {fb['instructions']}); failed requests: "
                    f"connection_error {asked}; {fb['endpoint_unreachable']}")
    assert out.count("every model request falls back") == 1  # said once, not once per request


class _Refusing(LoopbackServer):
    """Answers every chat completion with 401 (a key the server does not accept)."""

    def __init__(self) -> None:
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.hits += 1
                body = json.dumps({"error": {"message": "bad key", "type": "auth"}}).encode()
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)


def test_an_endpoint_that_answers_nothing_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with _Refusing() as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        monkeypatch.setenv("OPENAI_API_KEY", "wrong")
        assert main(_args(tmp_path / "out", tmp_path / "cache", "--llm-limit", "3")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: llm openai: none of the 3 tool understanding requests got a reply (http_401 3); "
                       "pass --allow-fallback to use the offline templates instead")
    assert srv.hits == 3 and not (tmp_path / "out").exists()  # 4xx: not retried, not re-asked as invalid JSON


def test_failed_requests_are_not_invalid_json_and_not_reasked(dead_url: str, tmp_path: Path) -> None:
    llm = OpenAILLM(model="m", base_url=dead_url, api_key="k", cache_dir=tmp_path, progress=False,
                    allow_fallback=True)
    reqs = [ChatRequest.of(str(k), "sys", f"q{k}") for k in range(5)]
    values, counts = ask_json(llm, reqs, lambda obj, i: obj)
    assert values == [None] * 5
    assert counts == {"valid": 0, "invalid_json": 0, "invalid_content": 0, "failed": 5, "reasked": 0, "fallback": 5}
    assert llm.stats.failure_reasons == {"connection_error": 5} and llm.stats.requests == 5


def test_retries_are_the_sdks() -> None:
    llm = OpenAILLM(model="m", base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=3, timeout=7.0)
    client = llm.client()
    assert client.max_retries == 3 and client.timeout == 7.0  # backoff with jitter and Retry-After: the SDK's
    assert not hasattr(llm, "backoff")
