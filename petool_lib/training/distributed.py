"""Training in several processes (``accelerate launch`` / ``torchrun``): which process this is, and the few steps
that only the main process may take.

A launcher starts one process per rank with ``RANK`` / ``LOCAL_RANK`` / ``WORLD_SIZE`` (torchrun, ``accelerate
launch``) or the MPI equivalents (``accelerate launch`` with mpirun on CPUs). Every process runs the whole stage:
loads the rows and the model and takes part in ``trainer.train()`` (DDP / DeepSpeed collectives). Only the main
process (global rank 0) touches the stage's folder outside the Trainer: it prepares the checkpoint folder and its
fingerprint (:func:`on_main`; the others receive its answer, or its error), and writes the adapter, the tokenizer,
``train_stats.json``, ``log_history.json``, ``train_config.json``, ``loss.png`` and the run's ``metrics.json``. The
Trainer itself already saves checkpoints from the main process only (``args.should_save``).

Without a launcher (``WORLD_SIZE`` unset or 1) everything here is a no-op: one process, rank 0, main.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any, Callable, TypeVar

T = TypeVar("T")

# the variables a launcher sets (torchrun / accelerate first, then MPI implementations), as accelerate reads them
RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
LOCAL_RANK_VARS = ("LOCAL_RANK", "MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK")
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def _dist() -> Any:
    """``torch.distributed`` when its process group is initialized, else None (torch imported only then)."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    """Number of training processes (1 without a launcher)."""
    dist = _dist() if "torch" in sys.modules else None
    return dist.get_world_size() if dist is not None else max(1, _env_int(WORLD_SIZE_VARS, 1))


def rank() -> int:
    """Global rank of this process (0 without a launcher)."""
    dist = _dist() if "torch" in sys.modules else None
    return dist.get_rank() if dist is not None else _env_int(RANK_VARS, 0)


def local_rank() -> int:
    """Rank of this process on its machine: the CUDA device it trains on (0 without a launcher)."""
    return _env_int(LOCAL_RANK_VARS, 0)


def is_distributed() -> bool:
    return world_size() > 1


def is_main_process() -> bool:
    """Whether this process writes the stage's files (global rank 0)."""
    return rank() == 0


def init_distributed(device: str) -> dict[str, Any]:
    """Join the launcher's process group now (gloo on CPU, NCCL on CUDA, DeepSpeed's when ``accelerate launch``
    configured it), so that the steps before ``trainer.train()`` can wait for the main process.

    The Trainer later builds its own accelerate ``PartialState`` with the same choice (``use_cpu`` on CPU) and
    reuses this process group. A no-op without a launcher. Returns what is recorded in ``train_stats.json``.
    """
    if _env_int(WORLD_SIZE_VARS, 1) > 1 and _dist() is None:
        from accelerate import PartialState

        PartialState(cpu=device != "cuda")
    return {"world_size": world_size(), "rank": rank(), "local_rank": local_rank()}


def barrier() -> None:
    dist = _dist()
    if dist is not None and dist.get_world_size() > 1:
        dist.barrier()


def _portable(exc: BaseException) -> BaseException:
    """``exc`` if it survives pickling (sent to the other ranks), else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


def _broadcast(obj: Any) -> Any:
    """``obj`` of rank 0, on every rank."""
    dist = _dist()
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _on_main(fn: Callable[[], T], send_result: bool) -> tuple[bool, Any]:
    """(ran here, result): ``fn`` runs on rank 0; its error (or, with ``send_result``, its result) goes to every
    rank, which waits for it."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return True, fn()
    if dist.get_rank() == 0:
        try:
            result = fn()
        except BaseException as exc:
            _broadcast(("error", _portable(exc)))
            raise
        _broadcast(("ok", result if send_result else None))
        return True, result
    status, value = _broadcast(None)
    if status == "error":
        raise value
    return False, value


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process only; every rank returns its result (pickled across), or raises its error.

    The other ranks wait until the main process is done (a synchronisation point), so they never see a folder
    the main process is still preparing, and no rank is left waiting on a collective when the main one fails.
    """
    return _on_main(fn, send_result=True)[1]


def main_first(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process first, then on the others (e.g. building a model cache once); an error on the
    main process is raised on every rank."""
    ran, result = _on_main(fn, send_result=False)
    return result if ran else fn()
