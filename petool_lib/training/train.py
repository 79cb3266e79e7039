"""PEToolLLaMA training: LoRA SFT, then DPO from the SFT policy (TRL 1.x trainers; CPU by default, Unsloth on a GPU).

Stages (the paper's two):

* ``sft`` — LoRA on all linear layers, loss on the assistant tool call only (TRL prompt-completion format),
  cosine schedule. Output: one PEFT adapter on the base model.
* ``dpo`` — starts from the SFT adapter; the reference model is the SFT policy (a frozen copy of the adapter,
  named ``ref``, inside the same PeftModel); sigmoid loss, beta 0.1. Before training, the policy and reference
  log-probs of the first pairs are compared (they must be equal, reward margin 0). Output: ONE adapter (SFT+DPO)
  on the base model.

Each stage writes into its output directory: the adapter, the tokenizer, ``train_config.json`` (resolved
config), ``log_history.json``, ``train_stats.json`` (data stats, tokens/s, peak memory, wall time) and
``loss.png``. Checkpoints go to ``<out>/checkpoints`` while training; an interrupted run resumes from the last
one (same config and data required) and the folder is removed after a successful run.

CLI::

    python -m petool_lib.training.train sft --data DIR --model MODEL --out OUT [--profile tiny|cpu|paper]
        [--backend auto|hf|unsloth] [--max-steps N]                       # -> OUT/sft
    python -m petool_lib.training.train dpo --data DIR --model MODEL --adapter OUT/sft --out OUT2 ...   # -> OUT2/dpo

Heavy imports (torch, transformers, trl, peft) stay inside functions: on the Unsloth path, ``unsloth`` must be
imported before them.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import random
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..core.data import DataError
from ..core.prompts import PromptError, parse_prompt, trim_history
from .config import (
    STAGES,
    StageConfig,
    dpo_config,
    get_profile,
    lora_config,
    sft_config,
    stage_config,
    to_dict,
)

BACKENDS: tuple[str, ...] = ("auto", "hf", "unsloth")
STAGE_FILES: dict[str, str] = {"sft": "sft.jsonl", "dpo": "dpo.jsonl"}
STAGE_COLUMNS: dict[str, tuple[str, ...]] = {"sft": ("prompt", "completion"), "dpo": ("prompt", "chosen", "rejected")}
REF_ADAPTER = "ref"
POLICY_ADAPTER = "default"


class BackendError(RuntimeError):
    """The requested training backend cannot run on this machine."""


# --- backend selection ----------------------------------------------------------------------------------------


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def unsloth_installed() -> bool:
    """Whether the ``unsloth`` package is installed (found without importing it)."""
    return importlib.util.find_spec("unsloth") is not None


def select_backend(requested: str = "auto", cuda: bool | None = None, unsloth: bool | None = None) -> str:
    """``auto`` → ``unsloth`` when a CUDA GPU is present and Unsloth is installed, else ``hf``.

    ``unsloth`` without a GPU (or without the package) raises :class:`BackendError` with the fix.
    """
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend {requested!r}; expected one of {BACKENDS}")
    if requested == "hf":
        return "hf"
    cuda = cuda_available() if cuda is None else cuda
    unsloth = unsloth_installed() if unsloth is None else unsloth
    if requested == "unsloth":
        if not cuda:
            raise BackendError("--backend unsloth needs a CUDA GPU and none is available; "
                               "use --backend hf (CPU) or auto")
        if not unsloth:
            raise BackendError("--backend unsloth: the unsloth package is not installed; "
                               "pip install -r requirements-gpu.txt (GPU machines only)")
        return "unsloth"
    return "unsloth" if (cuda and unsloth) else "hf"


# --- data -----------------------------------------------------------------------------------------------------


def _check_messages(value: Any, where: str, key: str, roles: Sequence[str] | None = None) -> None:
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: field {key!r} must be a non-empty list of chat messages")
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or not isinstance(msg.get("content"), str):
            raise DataError(f"{where}: field {key!r}[{i}] must be an object with string 'role' and 'content'")
        if roles is not None and msg["role"] not in roles:
            raise DataError(f"{where}: field {key!r}[{i}] has role {msg['role']!r}, expected one of {list(roles)}")


def validate_row(row: Any, stage: str, where: str) -> dict[str, Any]:
    """Check one SFT / DPO row (TRL conversational prompt-completion / preference format)."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: row is a {type(row).__name__}, expected an object")
    for key in STAGE_COLUMNS[stage]:
        if key not in row:
            raise DataError(f"{where}: missing field {key!r}")
        _check_messages(row[key], where, key, roles=None if key == "prompt" else ("assistant",))
    if not any(m["role"] == "user" for m in row["prompt"]):
        raise DataError(f"{where}: field 'prompt' has no user message")
    return row


def load_rows(data: str | Path, stage: str) -> list[dict[str, Any]]:
    """Rows of a stage from ``DIR/sft.jsonl`` / ``DIR/dpo.jsonl``, a JSONL file, or the DatasetDict ``DIR/hf``."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {STAGES}")
    path = Path(data)
    if path.is_dir() and (path / STAGE_FILES[stage]).is_file():
        path = path / STAGE_FILES[stage]
    if path.is_file():
        rows = []
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    raw = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc})") from exc
                rows.append(validate_row(raw, stage, f"{path}:{lineno}"))
        if not rows:
            raise DataError(f"{path}: no rows")
        return rows
    hf_dir = path / "hf" if (path / "hf").is_dir() else path
    if (hf_dir / "dataset_dict.json").is_file():
        from datasets import load_from_disk

        dd = load_from_disk(str(hf_dir))
        if stage not in dd:
            raise DataError(f"{hf_dir}: DatasetDict has splits {list(dd)}, no {stage!r} split")
        return [validate_row(r, stage, f"{hf_dir}[{stage}][{i}]") for i, r in enumerate(dd[stage])]
    raise DataError(f"{Path(data)}: no {STAGE_FILES[stage]} and no DatasetDict (hf/) found")


def count_tokens(tokenizer: Any, messages: list[dict[str, str]]) -> int:
    """Tokens of the chat-templated conversation (what the trainer sees)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _completions(row: dict[str, Any], stage: str) -> list[list[dict[str, str]]]:
    return [row["completion"]] if stage == "sft" else [row["chosen"], row["rejected"]]


@dataclass
class FitResult:
    row: dict[str, Any]
    tokens: int
    dropped: int = 0
    fits: bool = True
    parsed: bool = True


def fit_row(row: dict[str, Any], stage: str, tokenizer: Any, budget: int | None) -> FitResult:
    """Make a row fit ``budget`` tokens by dropping its oldest history items (query/candidates/format untouched).

    The token count is that of the full chat-templated conversation (system + user + assistant; for DPO the
    longer of chosen / rejected). Returns the (possibly) trimmed row; ``fits`` is False when even an empty
    history is too long, in which case the original row is returned untouched.
    """
    prompt = row["prompt"]
    sys_idx = next((i for i, m in enumerate(prompt) if m["role"] == "system"), None)
    completions = _completions(row, stage)

    def n_tokens(system_text: str | None) -> int:
        msgs = [dict(m) for m in prompt]
        if sys_idx is not None and system_text is not None:
            msgs[sys_idx]["content"] = system_text
        return max(count_tokens(tokenizer, msgs + c) for c in completions)

    n = n_tokens(None)
    if budget is None or n <= budget:
        return FitResult(row=row, tokens=n)
    if sys_idx is None:
        return FitResult(row=row, tokens=n, fits=False, parsed=False)
    try:
        parsed = parse_prompt(prompt[sys_idx]["content"])
    except PromptError:
        return FitResult(row=row, tokens=n, fits=False, parsed=False)
    trimmed, dropped = trim_history(parsed, lambda text: n_tokens(text) <= budget)
    text = trimmed.render()
    n_new = n_tokens(text)
    if n_new > budget:
        return FitResult(row=row, tokens=n, dropped=0, fits=False)
    new_prompt = [dict(m) for m in prompt]
    new_prompt[sys_idx]["content"] = text
    return FitResult(row={**row, "prompt": new_prompt}, tokens=n_new, dropped=dropped)


@dataclass
class PrepStats:
    """What happened to the rows on their way to the trainer (saved in ``train_stats.json``)."""

    stage: str
    source_rows: int
    token_budget: int | None
    too_long_policy: str
    max_examples: int | None
    considered: int = 0
    used: int = 0
    trimmed_rows: int = 0
    history_items_dropped: int = 0
    too_long_skipped: int = 0
    too_long_kept: int = 0
    unparsed_prompts: int = 0
    tokens_total: int = 0
    tokens_max: int = 0
    by_setting: dict[str, int] = field(default_factory=dict)
    entry_ids: list[Any] = field(default_factory=list)

    @property
    def not_considered(self) -> int:
        return self.source_rows - self.considered

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["not_considered"] = self.not_considered
        out["tokens_mean"] = round(self.tokens_total / self.used, 1) if self.used else 0.0
        return out


def balanced_order(rows: Sequence[dict[str, Any]], seed: int) -> list[int]:
    """Indices of ``rows`` shuffled per setting (seeded) and interleaved, so any prefix is balanced."""
    groups: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(str(r.get("setting", "")), []).append(i)
    rng = random.Random(seed)
    for idx in groups.values():
        rng.shuffle(idx)
    order: list[int] = []
    queues = [groups[k] for k in sorted(groups)]
    while any(queues):
        for q in queues:
            if q:
                order.append(q.pop(0))
    return order


def prepare_rows(
    rows: Sequence[dict[str, Any]], stage: str, tokenizer: Any, cfg: StageConfig, seed: int = 0
) -> tuple[list[dict[str, Any]], PrepStats]:
    """Trim histories to ``cfg.token_budget``, apply the too-long policy, cap at ``cfg.max_examples``.

    Rows are taken in a seeded, setting-balanced order until ``max_examples`` usable rows are found. Returned rows
    keep only the trainer's columns; skipped rows are counted, never silently lost.
    """
    stats = PrepStats(stage=stage, source_rows=len(rows), token_budget=cfg.token_budget,
                      too_long_policy=cfg.too_long, max_examples=cfg.max_examples)
    out: list[dict[str, Any]] = []
    cols = STAGE_COLUMNS[stage]
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        def tqdm(x: Iterable[Any], **_: Any) -> Iterable[Any]:  # type: ignore[no-redef]
            return x
    order = balanced_order(rows, seed)
    target = min(len(rows), cfg.max_examples) if cfg.max_examples else len(rows)
    with tqdm(total=target, desc=f"{stage}: fitting rows to {cfg.token_budget or 'any'} tokens", leave=False) as bar:
        for i in order:
            if cfg.max_examples is not None and len(out) >= cfg.max_examples:
                break
            row = rows[i]
            stats.considered += 1
            res = fit_row(row, stage, tokenizer, cfg.token_budget)
            if not res.parsed:
                stats.unparsed_prompts += 1
            if not res.fits:
                if cfg.too_long == "skip":
                    stats.too_long_skipped += 1
                    continue
                stats.too_long_kept += 1
            if res.dropped:
                stats.trimmed_rows += 1
                stats.history_items_dropped += res.dropped
            out.append({k: res.row[k] for k in cols})
            stats.used += 1
            stats.tokens_total += res.tokens
            stats.tokens_max = max(stats.tokens_max, res.tokens)
            setting = str(row.get("setting", ""))
            stats.by_setting[setting] = stats.by_setting.get(setting, 0) + 1
            stats.entry_ids.append(row.get("entry_id"))
            bar.update(1)
    return out, stats


# --- monitoring -----------------------------------------------------------------------------------------------


def _make_monitor() -> Any:
    """A TrainerCallback measuring training wall time, tokens/s and peak memory (RSS sampled by a thread)."""
    import psutil
    import torch
    from transformers import TrainerCallback

    class ResourceMonitor(TrainerCallback):
        def __init__(self) -> None:
            self.results: dict[str, Any] = {}
            self._stop = threading.Event()
            self._peak = 0
            self._thread: threading.Thread | None = None

        def _sample(self) -> None:
            proc = psutil.Process()
            while not self._stop.is_set():
                self._peak = max(self._peak, proc.memory_info().rss)
                self._stop.wait(0.1)

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._t0 = time.perf_counter()
            self._tokens0 = state.num_input_tokens_seen
            self._step0 = state.global_step
            self._peak = psutil.Process().memory_info().rss
            self._first: tuple[float, int] | None = None
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self._first is None:  # the first step carries one-off warm-up costs
                self._first = (time.perf_counter(), state.num_input_tokens_seen)

        def stop(self) -> None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()
                self._thread = None

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.stop()
            seconds = time.perf_counter() - self._t0
            tokens = int(state.num_input_tokens_seen - self._tokens0)
            self.results = {
                "train_seconds": round(seconds, 2),
                "steps_this_session": int(state.global_step - self._step0),
                "input_tokens_this_session": tokens,
                "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else 0.0,
                "tokens_per_s_after_first_step": (
                    round((state.num_input_tokens_seen - self._first[1]) / (time.perf_counter() - self._first[0]), 1)
                    if self._first is not None and state.global_step - self._step0 > 1 else None),
                "peak_rss_mb": round(self._peak / 2**20, 1),
                "peak_cuda_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1) if torch.cuda.is_available() else None,
            }

    return ResourceMonitor()


# --- log-probs (reference check, margins) -----------------------------------------------------------------------


def completion_logps(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of log-probs of the completion tokens of a collated batch (input_ids, attention_mask, completion_mask)."""
    import torch

    ids, cmask = batch["input_ids"], batch["completion_mask"]
    length = ids.shape[1]
    # logits only from the earliest completion position on (the prompt's logits are not needed)
    first = max(1, int(cmask.to(torch.float32).argmax(dim=1).min())) if bool(cmask.any()) else length
    keep = length - first + 1  # logits at positions first-1 .. length-1
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"], use_cache=False,
                       logits_to_keep=keep).logits
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # predictions for tokens first .. length-1
    tok_logp = logp.gather(-1, ids[:, first:].unsqueeze(-1)).squeeze(-1)
    return (tok_logp * cmask[:, first:].to(tok_logp.dtype)).sum(dim=1)


def reference_check(trainer: Any, n_pairs: int = 2) -> dict[str, Any]:
    """Policy vs reference on the first pairs before any update: equal log-probs, reward margin 0.

    Uses the trainer's own tokenized dataset and collator, and the same adapter switch TRL uses for the
    reference forward (``use_adapter(model, "ref")``).
    """
    from trl.trainer.utils import use_adapter

    model = trainer.accelerator.unwrap_model(trainer.model)
    ds = trainer.train_dataset
    n = min(n_pairs, len(ds))
    batch = trainer.data_collator([ds[i] for i in range(n)])
    batch = {k: v.to(trainer.accelerator.device) for k, v in batch.items() if hasattr(v, "to")}
    was_training = model.training
    model.eval()
    try:
        policy = completion_logps(model, batch)
        with use_adapter(model, REF_ADAPTER):
            ref = completion_logps(model, batch)
    finally:
        model.train(was_training)
    pc, pr = policy.chunk(2)
    rc, rr = ref.chunk(2)
    beta = trainer.args.beta
    margins = beta * ((pc - rc) - (pr - rr))
    diff = float((policy - ref).abs().max())
    return {
        "n_pairs": n,
        "max_abs_logp_diff": diff,
        "reward_margin_mean": float(margins.mean()),
        "policy_chosen_logps": [round(float(x), 4) for x in pc],
        "reference_chosen_logps": [round(float(x), 4) for x in rc],
        "equal": diff == 0.0,
    }


def _tokenize_pair(tokenizer: Any, prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    prompt_text = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template(prompt + completion, tokenize=False)
    if not full_text.startswith(prompt_text):
        raise ValueError("chat template: the prompt with generation prompt is not a prefix of the full conversation")
    p_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    c_ids = tokenizer(full_text[len(prompt_text):], add_special_tokens=False)["input_ids"]
    return p_ids, c_ids


def sequence_logps(model: Any, tokenizer: Any, prompt: list[dict[str, str]], completion: list[dict[str, str]]) -> float:
    """log p(completion | prompt) under ``model`` (sum over the completion tokens, chat template applied)."""
    import torch

    p_ids, c_ids = _tokenize_pair(tokenizer, prompt, completion)
    device = next(model.parameters()).device
    ids = torch.tensor([p_ids + c_ids], device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "completion_mask": torch.tensor([[0] * len(p_ids) + [1] * len(c_ids)], device=device)}
    return float(completion_logps(model, batch)[0])


def preference_margins(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]]) -> list[float]:
    """``log p(chosen) - log p(rejected)`` for each DPO row."""
    return [sequence_logps(model, tokenizer, r["prompt"], r["chosen"])
            - sequence_logps(model, tokenizer, r["prompt"], r["rejected"]) for r in rows]


def generate(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], max_new_tokens: int = 64) -> list[str]:
    """Greedy completions of each row's prompt (chat template with generation prompt)."""
    import torch

    device = next(model.parameters()).device
    outs = []
    for r in rows:
        text = tokenizer.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        enc = tokenizer(text, add_special_tokens=False, return_tensors="pt").to(device)
        with torch.no_grad():
            gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
        outs.append(tokenizer.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return outs


def official_rows(entries: Sequence[Any], settings: Sequence[str] = ("preferred", "ratings", "chronological")) -> list[dict[str, Any]]:
    """SFT-format rows from official test entries (settings cycled), e.g. held-out rows for before/after samples."""
    rows = []
    for i, e in enumerate(entries):
        s = settings[i % len(settings)]
        rows.append({
            "prompt": [{"role": "system", "content": e.prompts[s]}, {"role": "user", "content": e.query}],
            "completion": [{"role": "assistant", "content": json.dumps(e.ground_truth, ensure_ascii=False)}],
            "setting": s, "entry_id": e.entry_id,
        })
    return rows


def sample_rows(entries: Sequence[Any], tokenizer: Any, cfg: StageConfig, n: int = 3, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` held-out rows for before/after generations: official entries in a seeded order, settings cycled,
    histories trimmed to the stage's token budget like the training rows; entries that cannot fit are passed over
    (when fewer than ``n`` fit, the shortest of the rest fill up, whole)."""
    order = list(entries)
    random.Random(seed).shuffle(order)
    chosen: list[dict[str, Any]] = []
    spare: list[tuple[int, dict[str, Any]]] = []
    for row in official_rows(order):
        if len(chosen) >= n:
            break
        res = fit_row(row, "sft", tokenizer, cfg.token_budget)
        (chosen.append(res.row) if res.fits else spare.append((res.tokens, res.row)))
    chosen += [r for _, r in sorted(spare, key=lambda x: x[0])][: n - len(chosen)]
    return chosen


def compare_samples(entries: Sequence[Any], rows: Sequence[dict[str, Any]], **responses: list[str]) -> list[dict[str, Any]]:
    """One record per row: setting, query, ground truth and each named response with its paper-scoring verdict."""
    from ..harness.scoring import score_response

    by_id = {e.entry_id: e for e in entries}
    out = []
    for i, r in enumerate(rows):
        e = by_id[r["entry_id"]]
        rec: dict[str, Any] = {"setting": r["setting"], "query": e.query, "ground truth": r["completion"][0]["content"]}
        for name, resp in responses.items():
            score = score_response(e, resp[i], "paper")
            rec[name] = resp[i]
            rec[f"{name} tool ok"] = bool(score.tool_correct)
        out.append(rec)
    return out


def free_memory() -> None:
    """Collect garbage and empty the CUDA cache (between a sample model and training on a GPU)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def prepare_backend(requested: str = "auto") -> str:
    """Select the backend and, for Unsloth, import it now (before anything imports trl/transformers/peft)."""
    backend = select_backend(requested)
    if backend == "unsloth":
        from . import unsloth as unsloth_backend

        unsloth_backend.import_unsloth()
    return backend


# --- outputs --------------------------------------------------------------------------------------------------


def plot_log_history(log_history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Training loss per step (and, for DPO, reward margin and accuracy) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [h for h in log_history if "loss" in h and "step" in h]
    panels = [("loss", "training loss")]
    if any("rewards/margins" in h for h in logs):
        panels += [("rewards/margins", "reward margin (chosen - rejected)"), ("rewards/accuracies", "reward accuracy")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        pts = [(h["step"], h[key]) for h in logs if key in h]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3)
        ax.set_xlabel("optimizer step")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _jsonable(obj: Any) -> Any:
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        if isinstance(obj, dict):
            return {str(k): _jsonable(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [_jsonable(v) for v in obj]
        return str(obj)


@dataclass
class StageResult:
    """What a stage produced: the adapter directory and its metrics (also in ``train_stats.json``)."""

    stage: str
    out_dir: Path
    metrics: dict[str, Any]
    log_history: list[dict[str, Any]]
    model: Any = field(default=None, repr=False)  # the trained PeftModel (DPO: still holds the frozen "ref" adapter)
    tokenizer: Any = field(default=None, repr=False)
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the prepared training rows, in order


def _fingerprint(run_cfg: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return {**run_cfg, "rows_sha256": digest}


def resume_point(ckpt_dir: Path, fingerprint: dict[str, Any], resume: bool) -> str | None:
    """Last checkpoint to resume from (same config and data), else a clean checkpoint folder and None."""
    from transformers.trainer_utils import get_last_checkpoint

    meta = ckpt_dir / "run_fingerprint.json"
    if resume and ckpt_dir.is_dir():
        last = get_last_checkpoint(str(ckpt_dir))
        if last:
            old = json.loads(meta.read_text()) if meta.is_file() else None
            if old != json.loads(json.dumps(_jsonable(fingerprint))):  # compare as JSON (tuples become lists)
                raise RuntimeError(
                    f"{ckpt_dir} holds checkpoints of a different run (config or data changed); "
                    "pass --no-resume (resume=False) to start over"
                )
            return last
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    ckpt_dir.mkdir(parents=True)
    meta.write_text(json.dumps(_jsonable(fingerprint), indent=1, sort_keys=True))
    return None


def _finish(trainer: Any, stage: str, out: Path, tokenizer: Any, run_cfg: dict[str, Any], prep: PrepStats,
            monitor: Any, t_start: float, extra: dict[str, Any], keep_checkpoints: bool,
            rows: list[dict[str, Any]]) -> StageResult:
    model = trainer.accelerator.unwrap_model(trainer.model)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), selected_adapters=[POLICY_ADAPTER])
    tokenizer.save_pretrained(str(out))
    history = list(trainer.state.log_history)
    losses = [h["loss"] for h in history if "loss" in h]
    metrics = {
        "stage": stage,
        "final_loss": losses[-1] if losses else None,
        "first_loss": losses[0] if losses else None,
        "train_loss": next((h["train_loss"] for h in reversed(history) if "train_loss" in h), None),
        "steps": int(trainer.state.global_step),
        "max_steps": int(trainer.state.max_steps),
        "examples": prep.used,
        **monitor.results,
        "wall_seconds": round(time.perf_counter() - t_start, 2),
        "data": prep.to_dict(),
        **extra,
    }
    (out / "log_history.json").write_text(json.dumps(_jsonable(history), indent=1))
    (out / "train_stats.json").write_text(json.dumps(_jsonable(metrics), indent=1, sort_keys=True))
    (out / "train_config.json").write_text(json.dumps(_jsonable({
        **run_cfg, "training_args": trainer.args.to_dict()}), indent=1, sort_keys=True))
    plot_log_history(history, out / "loss.png", f"{stage.upper()} ({run_cfg['profile']}, {run_cfg['model']})")
    if not keep_checkpoints:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
    model.eval()
    return StageResult(stage=stage, out_dir=out, metrics=metrics, log_history=history, model=model, tokenizer=tokenizer,
                       rows=rows)


def _device() -> str:
    return "cuda" if cuda_available() else "cpu"


def _bf16(device: str) -> bool:
    import torch

    return device == "cuda" and torch.cuda.is_bf16_supported()


def _load_hf_base(path: str, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    if device == "cuda":  # device_map also places pre-quantized (bitsandbytes) checkpoints, which .to() cannot move
        dtype = torch.bfloat16 if _bf16(device) else torch.float16
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map={"": 0})
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _run_config(stage: str, profile: str, cfg: StageConfig, model: str, base_path: str, backend: str, device: str,
                seed: int, data: str | Path, adapter: str | None = None) -> dict[str, Any]:
    return {"stage": stage, "profile": profile, "stage_config": to_dict(cfg), "model": model, "base_model_path": base_path,
            "adapter": adapter, "backend": backend, "device": device, "seed": seed, "data": str(data)}


def train_sft(
    data: str | Path,
    model: str = "smollm2",
    out: str | Path = "outputs/run/models/sft",
    profile: str = "cpu",
    backend: str = "auto",
    max_steps: int | None = None,
    seed: int = 0,
    resume: bool = True,
    overrides: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
    keep_checkpoints: bool = False,
) -> StageResult:
    """LoRA SFT on ``sft.jsonl`` (loss on the completion only). ``out`` is the adapter directory."""
    t_start = time.perf_counter()
    prof = get_profile(profile)
    cfg = stage_config(prof, "sft", max_steps=max_steps, **(overrides or {}))
    be = select_backend(backend)
    if be == "unsloth":
        from . import unsloth as unsloth_backend

        unsloth_backend.import_unsloth()  # before trl / transformers / peft
    from datasets import Dataset
    from trl import SFTTrainer

    from ..core.models import resolve_model
    from .trl_compat import ensure_fused_lm_head

    lm_head_fallback = ensure_fused_lm_head()

    out = Path(out)
    device = _device()
    base_path = resolve_model(model)
    if be == "unsloth":
        from . import unsloth as unsloth_backend

        policy, tok = unsloth_backend.load_for_sft(base_path, cfg, prof.load_in_4bit, seed)
        peft_cfg = None
    else:
        tok = _load_tokenizer(base_path)
        policy, peft_cfg = None, lora_config(cfg.lora)
    rows, prep = prepare_rows(load_rows(data, "sft"), "sft", tok, cfg, seed)
    if not rows:
        raise DataError(f"{data}: no SFT row fits {cfg.token_budget} tokens ({prep.to_dict()})")
    run_cfg = _run_config("sft", prof.name, cfg, model, base_path, be, device, seed, data)
    resume_from = resume_point(out / "checkpoints", _fingerprint(run_cfg, rows), resume)
    if policy is None:
        policy = _load_hf_base(base_path, device)
    monitor = _make_monitor()
    trainer = SFTTrainer(
        model=policy,
        args=sft_config(cfg, str(out / "checkpoints"), seed, device, _bf16(device)),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        peft_config=peft_cfg,
        callbacks=[monitor, *(callbacks or [])],
    )
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        monitor.stop()
    return _finish(trainer, "sft", out, tok, run_cfg, prep, monitor, t_start,
                   {"resumed_from": resume_from, "torch_lm_head_fallback": lm_head_fallback}, keep_checkpoints, rows)


def _dpo_trainer_class() -> type:
    """DPOTrainer whose checkpoints hold only the trained adapter (the ``ref`` copy is rebuilt from the SFT one).

    Needed for resuming: transformers' checkpoint loader, seeing an adapter sub-folder (``ref/``), would load
    only the sub-folders and never restore the trained ``default`` adapter.
    """
    import os

    import torch
    from trl import DPOTrainer

    class PolicyOnlyDPOTrainer(DPOTrainer):
        def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
            model = self.accelerator.unwrap_model(self.model)
            if REF_ADAPTER not in getattr(model, "peft_config", {}):
                return super()._save(output_dir, state_dict)
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            os.makedirs(output_dir, exist_ok=True)
            model.save_pretrained(output_dir, selected_adapters=[POLICY_ADAPTER])
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    return PolicyOnlyDPOTrainer


def adapter_state(model: Any, adapter: str) -> dict[str, Any]:
    """The LoRA tensors of one adapter of a PeftModel, keyed without the adapter name."""
    tag = f".{adapter}."
    return {k.replace(tag, "."): v.detach().clone() for k, v in model.named_parameters() if tag in k}


def train_dpo(
    data: str | Path,
    adapter: str | Path,
    model: str = "smollm2",
    out: str | Path = "outputs/run/models/dpo",
    profile: str = "cpu",
    backend: str = "auto",
    max_steps: int | None = None,
    seed: int = 0,
    resume: bool = True,
    overrides: dict[str, Any] | None = None,
    callbacks: list[Any] | None = None,
    keep_checkpoints: bool = False,
) -> StageResult:
    """DPO from the SFT adapter, with the SFT policy as the frozen reference. ``out`` gets ONE adapter."""
    t_start = time.perf_counter()
    prof = get_profile(profile)
    cfg = stage_config(prof, "dpo", max_steps=max_steps, **(overrides or {}))
    be = select_backend(backend)
    if be == "unsloth":
        from . import unsloth as unsloth_backend

        unsloth_backend.import_unsloth()
    from datasets import Dataset

    from ..core.models import resolve_model
    from .trl_compat import ensure_fused_lm_head

    lm_head_fallback = ensure_fused_lm_head()
    adapter = Path(adapter)
    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter}: not a PEFT adapter directory (no adapter_config.json); run the SFT stage first")
    out = Path(out)
    device = _device()
    base_path = resolve_model(model)
    if be == "unsloth":
        from . import unsloth as unsloth_backend

        policy, tok = unsloth_backend.load_for_dpo(str(adapter), cfg, prof.load_in_4bit)
    else:
        from peft import PeftModel

        tok = _load_tokenizer(str(adapter))
        policy = None
    rows, prep = prepare_rows(load_rows(data, "dpo"), "dpo", tok, cfg, seed)
    if not rows:
        raise DataError(f"{data}: no DPO row fits {cfg.token_budget} tokens ({prep.to_dict()})")
    run_cfg = _run_config("dpo", prof.name, cfg, model, base_path, be, device, seed, data, adapter=str(adapter))
    resume_from = resume_point(out / "checkpoints", _fingerprint(run_cfg, rows), resume)
    if policy is None:
        policy = PeftModel.from_pretrained(_load_hf_base(base_path, device), str(adapter), is_trainable=True)
    monitor = _make_monitor()
    trainer = _dpo_trainer_class()(
        model=policy,
        ref_model=None,  # PEFT model + no ref_model: TRL adds a frozen "ref" copy of the SFT adapter
        args=dpo_config(cfg, str(out / "checkpoints"), seed, device, _bf16(device)),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[monitor, *(callbacks or [])],
    )
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if REF_ADAPTER not in unwrapped.peft_config:
        raise RuntimeError("DPOTrainer did not create the frozen 'ref' adapter: the reference would not be the SFT policy")
    ref_before = adapter_state(unwrapped, REF_ADAPTER)
    check = reference_check(trainer)
    if not check["equal"]:
        raise RuntimeError(f"policy and reference differ before DPO training: {check}")
    try:
        trainer.train(resume_from_checkpoint=resume_from)
    finally:
        monitor.stop()
    ref_after = adapter_state(trainer.accelerator.unwrap_model(trainer.model), REF_ADAPTER)
    ref_unchanged = all(bool((ref_before[k] == ref_after[k]).all()) for k in ref_before)
    if not ref_unchanged:
        raise RuntimeError("the frozen reference adapter changed during DPO training")
    return _finish(trainer, "dpo", out, tok, run_cfg, prep, monitor, t_start,
                   {"resumed_from": resume_from, "step0_reference_check": check,
                    "reference_unchanged": ref_unchanged, "beta": cfg.beta, "loss_type": cfg.loss_type,
                    "torch_lm_head_fallback": lm_head_fallback},
                   keep_checkpoints, rows)


# --- CLI ------------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m petool_lib.training.train", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="stage", required=True)
    for stage in STAGES:
        s = sub.add_parser(stage, help=f"{stage.upper()} stage; writes OUT/{stage}")
        s.add_argument("--data", required=True, help="run data dir (sft.jsonl / dpo.jsonl / hf/) or a JSONL file")
        s.add_argument("--model", default=None, help="smollm2 | tiny | HF id or path (default: the profile's)")
        s.add_argument("--out", required=True, help=f"models directory; the adapter goes to OUT/{stage}")
        if stage == "dpo":
            s.add_argument("--adapter", required=True, help="the SFT adapter directory (OUT/sft)")
        s.add_argument("--profile", default="cpu", choices=["tiny", "cpu", "paper"])
        s.add_argument("--backend", default="auto", choices=list(BACKENDS))
        s.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
        s.add_argument("--max-examples", type=int, default=None, help="override the profile's example cap")
        s.add_argument("--token-budget", type=int, default=None, help="override the profile's token budget")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--no-resume", action="store_true", help="ignore checkpoints of an interrupted run")
        s.add_argument("--keep-checkpoints", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prof = get_profile(args.profile)
    model = args.model or prof.default_model
    overrides = {"max_examples": args.max_examples, "token_budget": args.token_budget}
    common = dict(data=args.data, model=model, out=Path(args.out) / args.stage, profile=args.profile,
                  backend=args.backend, max_steps=args.max_steps, seed=args.seed, resume=not args.no_resume,
                  overrides=overrides, keep_checkpoints=args.keep_checkpoints)
    try:
        if args.stage == "sft":
            res = train_sft(**common)
        else:
            res = train_dpo(adapter=args.adapter, **common)
    except (BackendError, DataError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in res.metrics.items() if k != "data"}
    summary["data"] = {k: v for k, v in res.metrics["data"].items() if k != "entry_ids"}
    print(json.dumps(_jsonable(summary), indent=1))
    print(f"adapter: {res.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
