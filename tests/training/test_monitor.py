"""The resource monitor: wall time, tokens/s (overall and after the warm-up step) and peak RSS."""

from __future__ import annotations

import time
import types

import pytest

from petool_lib.training import ResourceMonitor


def test_monitor_measures_a_session() -> None:
    mon = ResourceMonitor(interval=0.01)
    mon.begin(tokens_seen=100, step=2)  # a resumed run: counts start from here
    ballast = bytearray(64 * 2**20)  # the sampling thread sees RSS go up
    time.sleep(0.05)
    mon.step_end(tokens_seen=150)
    time.sleep(0.05)
    mon.step_end(tokens_seen=200)  # only the first step_end marks the warm-up
    res = mon.end(tokens_seen=300, step=5)
    del ballast
    assert res is mon.results and mon._thread is None
    assert res["steps_this_session"] == 3 and res["input_tokens_this_session"] == 200
    assert res["train_seconds"] >= 0.1 and 0 < res["tokens_per_s"] <= 2000
    assert res["tokens_per_s_after_first_step"] is not None and res["tokens_per_s_after_first_step"] <= 150 / 0.05
    assert res["peak_rss_mb"] > 64
    mon.stop()  # idempotent


def test_one_step_has_no_after_warmup_rate() -> None:
    mon = ResourceMonitor()
    mon.begin()
    mon.step_end(10)
    assert mon.end(10, 1)["tokens_per_s_after_first_step"] is None


def test_trainer_callback_drives_the_monitor() -> None:
    pytest.importorskip("transformers")
    from transformers import TrainerCallback

    mon = ResourceMonitor()
    cb = mon.callback()
    assert isinstance(cb, TrainerCallback)
    state = types.SimpleNamespace(num_input_tokens_seen=0, global_step=0)
    cb.on_train_begin(None, state, None)
    state.num_input_tokens_seen, state.global_step = 40, 1
    cb.on_step_end(None, state, None)
    state.num_input_tokens_seen, state.global_step = 80, 2
    cb.on_train_end(None, state, None)
    assert mon.results["steps_this_session"] == 2 and mon.results["input_tokens_this_session"] == 80
