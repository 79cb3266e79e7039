"""One entry point for every command: ``python -m petool_lib COMMAND ...`` (or the ``petool`` script).

Each command is the ``main`` of one stage module; ``python -m <that module>`` runs the same code. The module is
imported only when its command runs, so ``evaluate`` never loads torch.
"""

from __future__ import annotations

import importlib
import sys

# command -> (module with a ``main(argv)``, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "synthesize": ("petool_lib.synthesis.cli", "tool preparation + history synthesis -> training/test data"),
    "train": ("petool_lib.training.cli", "LoRA SFT or DPO on synthesized rows"),
    "predict": ("petool_lib.inference.predictions", "a model's responses on the official test set"),
    "baselines": ("petool_lib.harness.baselines", "prompt-only baselines (random, functional, history)"),
    "evaluate": ("petool_lib.harness.evaluate", "score a predictions file (paper or robust scoring)"),
    "probe-rename": ("petool_lib.harness.probes", "test set with providers renamed per entry (history-reading probe)"),
    "bench": ("petool_lib.benchmarks.predict", "predictor vs a reference-style generation loop"),
    "bench-train": ("petool_lib.benchmarks.train", "cpu-profile training vs TRL defaults"),
    "learning-curve": ("petool_lib.benchmarks.learning_curve", "Tool/Param Acc after N training rows (one SFT run)"),
    "minimal-pairs": ("petool_lib.benchmarks.minimal_pairs", "does a model tell a row from its contrast row?"),
    "reproduce": ("petool_lib.reproduce", "notebooks 01-06 under papermill into outputs/<run>/"),
    "compare": ("petool_lib.reporting.compare", "two runs: differing metrics, predictions, and manifest (machine)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m petool_lib COMMAND [ARGS ...]   (COMMAND --help for its arguments)", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}   [{module}]" for name, (module, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"petool: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)
