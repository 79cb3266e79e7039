"""``python -m petool_lib.training.cli sft|dpo ...`` (also ``python -m petool_lib train sft|dpo ...``)::

    python -m petool_lib.training.cli sft --data DIR --model MODEL --out OUT [--profile tiny|cpu|cpu-long|paper|PATH.yaml]
        [--backend auto|hf|unsloth] [--max-steps N]                                           # -> OUT/sft
    python -m petool_lib.training.cli dpo --data DIR --model MODEL --adapter OUT/sft --out OUT2 ...   # -> OUT2/dpo

Several processes (DDP on GPUs, DeepSpeed ZeRO-2, or gloo on CPUs; configs in ``configs/accelerate/``)::

    accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m petool_lib train sft ...

Every process trains; only the main one writes the stage's files and prints the summary.

The profile (a name: ``configs/<name>.yaml``, or any profile YAML) is read once here, its stage config built with
the command-line overrides, the backend resolved, and the resolved objects handed to ``train_sft`` / ``train_dpo``.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from ..core.data import DataError
from .backend import BACKENDS, BackendError, prepare_backend
from .checkpoints import ResumeError, to_jsonable
from .config import (PROFILE_NAMES, REPORT_TO, STAGES, ProfileError, load_training_profile, parse_report_to,
                     stage_config)
from .distributed import is_main_process
from .dpo import train_dpo
from .sft import train_sft


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m petool_lib.training.cli",
                                description="LoRA SFT, then DPO from the SFT adapter (TRL; CPU by default, Unsloth on a GPU)")
    sub = p.add_subparsers(dest="stage", required=True)
    for stage in STAGES:
        s = sub.add_parser(stage, help=f"{stage.upper()} stage; writes OUT/{stage}")
        s.add_argument("--data", required=True, help="run data dir (sft.jsonl / dpo.jsonl / hf/) or a JSONL file")
        s.add_argument("--model", default=None, help="smollm2 | tiny | HF id or path (default: the profile's)")
        s.add_argument("--out", required=True, help=f"models directory; the adapter goes to OUT/{stage}")
        if stage == "dpo":
            s.add_argument("--adapter", required=True, help="the SFT adapter directory (OUT/sft)")
        else:
            s.add_argument("--adapter", default=None,
                           help="continue SFT from this adapter instead of a fresh one (a curriculum's next phase; "
                                "its LoRA shape is kept; hf backend)")
        s.add_argument("--profile", default="cpu", metavar="|".join(PROFILE_NAMES) + "|PATH.yaml",
                       help="training recipe: the training: section of configs/<name>.yaml or of a profile YAML")
        s.add_argument("--backend", default="auto", choices=list(BACKENDS))
        s.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
        s.add_argument("--max-examples", type=int, default=None, help="override the profile's example cap")
        s.add_argument("--token-budget", type=int, default=None, help="override the profile's token budget")
        s.add_argument("--settings", default=None,
                       help="train only on rows of these settings, e.g. ratings (comma list; default: all)")
        s.add_argument("--cases", default=None,
                       help="train only on rows of these decision cases, e.g. visible,switch (comma list of "
                            "absent|visible|switch|avoid|conflict; default: the profile's, else all)")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--no-resume", action="store_true",
                       help="ignore checkpoints of an interrupted run (by default a rerun resumes from the newest "
                            "complete checkpoint of the same config and data; incomplete ones are skipped)")
        s.add_argument("--keep-checkpoints", action="store_true",
                       help="keep every checkpoint in OUT/STAGE/checkpoints (by default only the newest is kept "
                            "while training, and it is removed once the stage has written its adapter)")
        s.add_argument("--report-to", default=None, metavar="|".join(REPORT_TO),
                       help="send the training logs to these trackers (comma list; overrides the profile's "
                            "report_to, default none); tensorboard logs go to OUT/STAGE/tensorboard")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        profile = load_training_profile(args.profile)
        if args.report_to is not None:
            try:
                profile = replace(profile, report_to=parse_report_to(args.report_to))
            except ValueError as exc:
                raise ProfileError(f"--report-to: {exc}") from None
        settings = tuple(x.strip() for x in args.settings.split(",") if x.strip()) if args.settings else None
        cases = tuple(x.strip() for x in args.cases.split(",") if x.strip()) if args.cases else None
        try:
            cfg = stage_config(profile, args.stage, max_steps=args.max_steps, max_examples=args.max_examples,
                               token_budget=args.token_budget, settings=settings, cases=cases)
        except ValueError as exc:  # e.g. an unknown setting
            raise ProfileError(f"{args.profile}: {exc}") from None
        backend = prepare_backend(args.backend)  # before anything imports trl / transformers / peft
        common = dict(profile=profile, model=args.model or profile.default_model, out=Path(args.out) / args.stage,
                      backend=backend, seed=args.seed, resume=not args.no_resume,
                      keep_checkpoints=args.keep_checkpoints)
        if args.stage == "sft":
            res = train_sft(args.data, cfg, adapter=args.adapter, **common)
        else:
            res = train_dpo(args.data, cfg, adapter=args.adapter, **common)
    except (BackendError, DataError, ProfileError, ResumeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not is_main_process():  # the main process prints the summary (the same numbers)
        return 0
    summary = {k: v for k, v in res.metrics.items() if k != "data"}
    summary["data"] = {k: v for k, v in res.metrics["data"].items() if k != "entry_ids"}
    print(json.dumps(to_jsonable(summary), indent=1))
    print(f"adapter: {res.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
