"""Synthesize PEToolBench-style training and test data from a tool corpus (notebooks 01-02 as one command).

    python -m petool_lib synthesize --tools sample|official|PATH --out DIR [--llm offline|openai|hf] [--seed N]
        [--train N] [--test N] [--holdout strict|shared-pool] [--test-set PATH] [--model NAME] [--dry-run]
        [--overwrite] [--allow-fallback] [--lf-cutoff-len N] [--lf-tokenizer smollm2|tiny|NAME|none]

(``python -m petool_lib.synthesis.cli`` runs the same.) ``--train`` counts examples per setting. ``--backend`` is
the deprecated spelling of ``--llm``. ``--out`` must be writable and empty, absent, or a previous synthesis run
(checked before any work); ``--overwrite`` uses another non-empty directory, replacing only the files synthesis
writes. A model LLM that cannot be reached is an error unless ``--allow-fallback``; whatever fell back to the
offline templates is counted in the manifest (``llm.fallback``) and in the last line printed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, Callable

from .config import SynthConfig
from .grouping import EMBEDDINGS
from .holdout import HOLDOUTS
from .llm import LLMS
from .pipeline import synthesize


def _int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an int >= ``low`` (the error names the argument, as argparse's own do)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = "int"
    return parse


def _float_in(low: float, high: float | None = None) -> Callable[[str], float]:
    """A finite float >= ``low`` (and <= ``high`` when given)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
        if not (math.isfinite(value) and low <= value and (high is None or value <= high)):
            rng = f"in [{low:g}, {high:g}]" if high is not None else f"a finite number >= {low:g}"
            raise argparse.ArgumentTypeError(f"must be {rng}, got {text}")
        return value

    parse.__name__ = "float"
    return parse


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m petool_lib synthesize", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tools", default="sample", help="sample | official | path to a ToolBench-format tool directory")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--llm", default=None, choices=LLMS, help="the synthesis LLM (default: offline, templates only)")
    ap.add_argument("--backend", default=None, choices=LLMS, help=argparse.SUPPRESS)  # deprecated: --llm
    ap.add_argument("--model", default=None, help="model name (openai: default gpt-4o-mini; hf: smollm2 | tiny | path)")
    ap.add_argument("--seed", type=_int_at_least(0), default=0)
    ap.add_argument("--train", type=_int_at_least(0), default=SynthConfig.train, help="training examples per setting")
    ap.add_argument("--test", type=_int_at_least(0), default=SynthConfig.test, help="synthesized test entries")
    ap.add_argument("--holdout", default="strict", choices=HOLDOUTS)
    ap.add_argument("--test-set", default=None, help="official test set (file or directory); default: the data finder")
    ap.add_argument("--instructions-per-api", type=_int_at_least(1), default=SynthConfig.instructions_per_api)
    ap.add_argument("--group-threshold", type=_float_in(0.0, 1.0), default=SynthConfig.group_threshold)
    ap.add_argument("--noise", type=_float_in(0.0), default=SynthConfig.noise)
    ap.add_argument("--embedding", default="auto", choices=EMBEDDINGS)
    ap.add_argument("--llm-limit", type=_int_at_least(0), default=None,
                    help="send at most this many APIs per step to the model")
    ap.add_argument("--llm-max-tokens", type=_int_at_least(1), default=None,
                    help="reply length cap (default 256 openai, 128 hf)")
    ap.add_argument("--concurrency", type=_int_at_least(1), default=SynthConfig.concurrency,
                    help="openai: parallel requests")
    ap.add_argument("--cache-dir", default=None, help="LLM reply cache (default $PETOOL_CACHE/llm)")
    ap.add_argument("--dry-run", action="store_true", help="print the expected model calls and tokens, write nothing")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--overwrite", action="store_true",
                    help="use a non-empty --out that is not a previous synthesis run (only synthesis files replaced)")
    ap.add_argument("--lf-cutoff-len", type=_int_at_least(1), default=SynthConfig.lf_cutoff_len,
                    help="LLaMA-Factory export: fit prompt + answer to this many tokens (the recipes' cutoff_len)")
    ap.add_argument("--lf-tokenizer", default=SynthConfig.lf_tokenizer,
                    help="tokenizer that counts them: smollm2 | tiny | HF id / path | none (export unfitted)")
    ap.add_argument("--allow-fallback", action="store_true",
                    help="go on with the offline templates when the model LLM cannot be reached (counted)")
    return ap


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    """The :class:`SynthConfig` of parsed arguments (``--backend`` warns and stands in for a missing ``--llm``)."""
    if args.backend is not None:
        print("warning: --backend is deprecated for synthesis, use --llm", file=sys.stderr)
    return SynthConfig(tools=args.tools, out=args.out, llm=args.llm or args.backend or "offline", model=args.model,
                       seed=args.seed, train=args.train, test=args.test, holdout=args.holdout, test_set=args.test_set,
                       instructions_per_api=args.instructions_per_api, group_threshold=args.group_threshold,
                       noise=args.noise, embedding=args.embedding, llm_limit=args.llm_limit,
                       llm_max_tokens=args.llm_max_tokens, concurrency=args.concurrency, cache_dir=args.cache_dir,
                       progress=not args.no_progress, dry_run=args.dry_run, allow_fallback=args.allow_fallback,
                       overwrite=args.overwrite, lf_cutoff_len=args.lf_cutoff_len,
                       lf_tokenizer=None if str(args.lf_tokenizer).lower() == "none" else args.lf_tokenizer)


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(build_parser().parse_args(argv))
    try:
        m = synthesize(cfg)
    except (ValueError, OSError, RuntimeError) as exc:  # OutputDirError is a ValueError, LLMUnavailable a RuntimeError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if cfg.dry_run:
        print(json.dumps(m["llm_plan"], indent=2))
        return 0
    c = m["counts"]
    print(f"wrote {cfg.out}: {c['train_entries']} train entries x 3 settings ({c['sft_rows']} SFT / {c['dpo_rows']} DPO rows), "
          f"{c['test_entries']} test entries; {m['grouping']['groups']} groups {m['grouping']['size_distribution']}; "
          f"skipped inputs {m['skipped_inputs']['counts']}; timings {m['timings_s']}")
    lk = m["leakage"]
    if lk.get("checked"):
        print(f"holdout {lk['holdout']}: train queries in official test {lk['train_queries_in_official_test']}, "
              f"train target groups with official GT API {lk['train_target_groups_with_official_gt_api']}")
    else:
        print(f"holdout check skipped: {lk.get('reason')}")
    line = fallback_line(m["llm"]["fallback"])
    if line:
        print(line, file=sys.stderr)
    return 0


def fallback_line(fb: dict[str, Any]) -> str:
    """The run's last line when items fell back to the offline templates (empty when none did)."""
    if not fb["items"]:
        return ""
    why = ", ".join(f"{k} {v}" for k, v in fb["failed_requests"].items()) or "no failed request"
    return (f"warning: {fb['items']} items fell back to the offline templates (tool understanding "
            f"{fb['tool_understanding']}, instruction APIs {fb['instructions']}); failed requests: {why}"
            + (f"; {fb['endpoint_unreachable']}" if fb["endpoint_unreachable"] else ""))


if __name__ == "__main__":
    sys.exit(main())
