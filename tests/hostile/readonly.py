"""Read-only output folders for the hostile tests: root ignores file modes, so commands under test run in a
subprocess without the capabilities that let it (:func:`no_dac_override` as ``preexec_fn``)."""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def read_only_folder() -> Iterator[Path]:
    """An empty read-only directory under a world-readable base (so an unprivileged process can reach it)."""
    base = Path(tempfile.mkdtemp(prefix="petool-ro-"))
    base.chmod(0o755)
    ro = base / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        yield ro
    finally:
        ro.chmod(0o755)
        shutil.rmtree(base)


def no_dac_override() -> None:
    """``preexec_fn``: as root, drop the capabilities that let root ignore file modes (from the bounding set, so the
    exec'd interpreter runs without them); a no-op for other users."""
    if os.getuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
