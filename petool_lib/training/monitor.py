"""Measuring a training run: wall time, input tokens per second and peak memory (RSS sampled by a thread, and the
CUDA peak on a GPU).

:class:`ResourceMonitor` is plain Python; :meth:`ResourceMonitor.callback` wraps it in a transformers
``TrainerCallback`` (imported only then)::

    monitor = ResourceMonitor()
    trainer = SFTTrainer(..., callbacks=[monitor.callback()])
    try:
        trainer.train()
    finally:
        monitor.stop()
    monitor.results  # {"train_seconds", "tokens_per_s", "tokens_per_s_after_first_step", "peak_rss_mb", ...}
"""

from __future__ import annotations

import threading
import time
from typing import Any


def _cuda() -> Any:
    """``torch.cuda`` when a GPU is present, else None (torch is imported only by a training run)."""
    import torch

    return torch.cuda if torch.cuda.is_available() else None


class ResourceMonitor:
    """Training wall time, tokens/s (overall and after the warm-up first step) and peak RSS / CUDA memory."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.results: dict[str, Any] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0
        self._t0 = 0.0
        self._tokens0 = 0
        self._step0 = 0
        self._first: tuple[float, int] | None = None

    @staticmethod
    def _rss() -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._rss())
            self._stop.wait(self.interval)

    def begin(self, tokens_seen: int = 0, step: int = 0) -> None:
        """Training starts (or resumes at ``step`` with ``tokens_seen`` input tokens already counted)."""
        self._t0 = time.perf_counter()
        self._tokens0, self._step0 = tokens_seen, step
        self._first = None
        self._peak = self._rss()
        cuda = _cuda()
        if cuda is not None:
            cuda.reset_peak_memory_stats()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def step_end(self, tokens_seen: int) -> None:
        """An optimizer step ended; the first one carries one-off warm-up costs, so later rates start after it."""
        if self._first is None:
            self._first = (time.perf_counter(), tokens_seen)

    def stop(self) -> None:
        """Stop the sampling thread (idempotent; call it in a ``finally`` in case training raises)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def end(self, tokens_seen: int, step: int) -> dict[str, Any]:
        """Training ended at ``step`` having seen ``tokens_seen`` input tokens: stop and fill :attr:`results`."""
        self.stop()
        now = time.perf_counter()
        seconds = now - self._t0
        tokens = int(tokens_seen - self._tokens0)
        after_first = None
        if self._first is not None and step - self._step0 > 1:
            after_first = round((tokens_seen - self._first[1]) / (now - self._first[0]), 1)
        cuda = _cuda()
        self.results = {
            "train_seconds": round(seconds, 2),
            "steps_this_session": int(step - self._step0),
            "input_tokens_this_session": tokens,
            "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else 0.0,
            "tokens_per_s_after_first_step": after_first,
            "peak_rss_mb": round(self._peak / 2**20, 1),
            "peak_cuda_mb": round(cuda.max_memory_allocated() / 2**20, 1) if cuda is not None else None,
        }
        return self.results

    def callback(self) -> Any:
        """A transformers ``TrainerCallback`` that drives this monitor from the trainer's events."""
        from transformers import TrainerCallback

        monitor = self

        class ResourceMonitorCallback(TrainerCallback):
            def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                monitor.begin(state.num_input_tokens_seen, state.global_step)

            def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                monitor.step_end(state.num_input_tokens_seen)

            def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
                monitor.end(state.num_input_tokens_seen, state.global_step)

        return ResourceMonitorCallback()
