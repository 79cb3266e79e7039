"""Synthesize PEToolBench-style training and test data from a tool corpus (notebooks 01-02 as one command).

    python -m petool_lib synthesize --tools sample|official|PATH --out DIR [--llm offline|openai|hf] [--seed N]
        [--train N] [--test N] [--holdout strict|shared-pool] [--test-set PATH] [--model NAME] [--dry-run]

(``python -m petool_lib.synthesis.cli`` runs the same.) ``--train`` counts examples per setting. ``--backend`` is
the deprecated spelling of ``--llm``.
"""

from __future__ import annotations

import argparse
import json
import sys

from .config import SynthConfig
from .grouping import EMBEDDINGS
from .holdout import HOLDOUTS
from .llm import LLMS
from .pipeline import synthesize


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m petool_lib synthesize", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tools", default="sample", help="sample | official | path to a ToolBench-format tool directory")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--llm", default=None, choices=LLMS, help="the synthesis LLM (default: offline, templates only)")
    ap.add_argument("--backend", default=None, choices=LLMS, help=argparse.SUPPRESS)  # deprecated: --llm
    ap.add_argument("--model", default=None, help="model name (openai: default gpt-4o-mini; hf: smollm2 | tiny | path)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=SynthConfig.train, help="training examples per setting")
    ap.add_argument("--test", type=int, default=SynthConfig.test, help="synthesized test entries")
    ap.add_argument("--holdout", default="strict", choices=HOLDOUTS)
    ap.add_argument("--test-set", default=None, help="official test set (file or directory); default: the data finder")
    ap.add_argument("--instructions-per-api", type=int, default=SynthConfig.instructions_per_api)
    ap.add_argument("--group-threshold", type=float, default=SynthConfig.group_threshold)
    ap.add_argument("--noise", type=float, default=SynthConfig.noise)
    ap.add_argument("--embedding", default="auto", choices=EMBEDDINGS)
    ap.add_argument("--llm-limit", type=int, default=None, help="send at most this many APIs per step to the model")
    ap.add_argument("--llm-max-tokens", type=int, default=None, help="reply length cap (default 256 openai, 128 hf)")
    ap.add_argument("--concurrency", type=int, default=SynthConfig.concurrency, help="openai: parallel requests")
    ap.add_argument("--cache-dir", default=None, help="LLM reply cache (default $PETOOL_CACHE/llm)")
    ap.add_argument("--dry-run", action="store_true", help="print the expected model calls and tokens, write nothing")
    ap.add_argument("--no-progress", action="store_true")
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
                       progress=not args.no_progress, dry_run=args.dry_run)


def main(argv: list[str] | None = None) -> int:
    cfg = config_from_args(build_parser().parse_args(argv))
    try:
        m = synthesize(cfg)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
