"""Test-only entry point: ``python -m tests.hostile.outputs_hang_in_save ARGS`` runs ``python -m petool_lib ARGS``
with the Trainer made to hang in the middle of writing one checkpoint, so a test can ``kill -9`` it there.

``PETOOL_TEST_HANG_AT_STEP=N``: when the checkpoint of step N is being saved, after its adapter weights are written
and before its optimizer state and ``trainer_state.json`` (which the Trainer writes last), the process writes the
checkpoint's path to ``PETOOL_TEST_HANG_MARKER`` and sleeps. The hook lives here, not in the package: nothing in
``petool_lib`` knows about it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def install_hang(step: int, marker: Path) -> None:
    """Make ``Trainer._save_optimizer_and_scheduler`` hang at ``step`` (after writing ``marker``)."""
    from transformers import Trainer

    original = Trainer._save_optimizer_and_scheduler

    def hang(self: Any, output_dir: str) -> None:
        if self.state.global_step == step:
            marker.write_text(output_dir)
            time.sleep(600)  # the test kills the process here
        original(self, output_dir)

    Trainer._save_optimizer_and_scheduler = hang


def main(argv: list[str]) -> int:
    install_hang(int(os.environ["PETOOL_TEST_HANG_AT_STEP"]), Path(os.environ["PETOOL_TEST_HANG_MARKER"]))
    from petool_lib.cli import main as petool

    return petool(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
