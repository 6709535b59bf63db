"""How many CPU threads training uses, and how DataLoader workers share the cores with it.

What ``bench/threads.py`` measures (its results are in ``experiments/benchmarks/notes/``): torch's
intra-op threads should take every core, and with features cached (``data.feature_cache``) the
training process should read batches itself rather than through a worker process competing for
the same cores. Workers run single-threaded and, optionally, at a lower scheduling priority.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
from collections.abc import Collection
from pathlib import Path

import torch

# CPU flags (``/proc/cpuinfo``) of bfloat16 arithmetic in hardware: AMX tiles or AVX-512 BF16.
# Without them torch emulates bfloat16, which is slower than float32.
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, which SLURM and containers restrict)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_threads(threads: int | str | None) -> int:
    """Sets torch's intra-op threads: a number, or ``auto``/``None`` for every available core.

    Returns the number set.
    """
    if threads in (None, "auto"):
        count = available_cores()
    else:
        try:
            count = int(threads)
        except (TypeError, ValueError):
            raise ValueError(f"threads must be a positive number or 'auto', got {threads!r}") from None
        if count <= 0:
            raise ValueError(f"threads must be a positive number or 'auto', got {threads!r}")
    torch.set_num_threads(count)
    return count


def share_cores(threads: int | str | None, trainer) -> None:
    """With ``threads=auto`` and several training processes on this machine's CPU (``trainer=
    ddp_cpu``), gives each process an equal share of the cores instead of all of them."""
    from lightning.pytorch.accelerators import CPUAccelerator

    processes = trainer.num_devices if isinstance(trainer.accelerator, CPUAccelerator) else 1
    if threads in (None, "auto") and processes > 1:
        torch.set_num_threads(max(1, available_cores() // processes))


def data_workers(workers: int | str | None) -> int:
    """DataLoader worker processes: a number, or ``auto``: none on machines with at most two cores
    (with cached features, a worker there slowed training steps by 13 %, ``bench/threads.py``),
    two elsewhere (reading cached features is light; audio without a cache wants more)."""
    if workers in (None, "auto"):
        return 0 if available_cores() <= 2 else 2
    try:
        count = int(workers)
    except (TypeError, ValueError):
        raise ValueError(f"num_workers must be >= 0 or 'auto', got {workers!r}") from None
    if count < 0:
        raise ValueError(f"num_workers must be >= 0 or 'auto', got {workers!r}")
    return count


def _init_worker(worker_id: int, nice: int) -> None:
    # One thread per worker: feature extraction of one item is small, and more threads would only
    # compete with training for the cores of small machines.
    torch.set_num_threads(1)
    if nice > 0 and hasattr(os, "nice"):
        os.nice(nice)


def worker_init(nice: int = 0):
    """A ``worker_init_fn`` for DataLoaders: single-threaded workers, ``nice`` steps lower in
    priority than the training process (0 keeps the same priority)."""
    if nice < 0:
        raise ValueError(f"worker_nice must be >= 0 (a lower priority), got {nice}")
    return functools.partial(_init_worker, nice=nice)


def cpu_flags() -> set[str]:
    """The CPU's feature flags as ``/proc/cpuinfo`` lists them (empty where it does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def native_bf16(flags: Collection[str] | None = None) -> bool:
    """Whether the CPU computes bfloat16 in hardware (:data:`NATIVE_BF16_FLAGS`); ``flags``
    defaults to this machine's (:func:`cpu_flags`)."""
    return any(flag in (cpu_flags() if flags is None else flags) for flag in NATIVE_BF16_FLAGS)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The device a command or API call runs on: ``auto`` is the first GPU where CUDA is
    available and the CPU elsewhere; anything else (``cpu``, ``cuda``, ``cuda:1``) as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_for(device: torch.device, precision: str):
    """The autocast context that Lightning's ``precision`` runs a step in, for code outside a
    Trainer: bfloat16 for ``bf16-mixed``, float16 for ``16-mixed``, off for the rest; on
    ``device``'s type."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(str(precision))
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def auto_precision(accelerator: str = "auto", flags: Collection[str] | None = None) -> str:
    """What ``trainer.precision=auto`` trains in: ``bf16-mixed`` on a GPU that supports it and on
    a CPU with native bfloat16 (:func:`native_bf16`), ``32-true`` elsewhere."""
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    return "bf16-mixed" if native_bf16(flags) else "32-true"


# oneDNN, which runs torch's CPU convolutions, bf16 LSTMs and some matrix products, keeps a
# compiled kernel for each input shape it has met, up to 1,024 by default. Speech batches come in
# a new length almost every time, so that cache grew by hundreds of MB within a few dozen training
# steps; a small one costs a few percent of step time instead (bench/kernel_cache.py measures
# both).
KERNEL_CACHE = 64


def limit_kernel_cache(capacity: int = KERNEL_CACHE) -> None:
    """Caps oneDNN's cache of compiled kernels (``ONEDNN_PRIMITIVE_CACHE_CAPACITY``) unless the
    environment sets it already. oneDNN reads the variable when it compiles its first kernel, so
    the entry points call this before their first model runs; after that it changes nothing."""
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", str(capacity))


def anonymous_memory_mb() -> float | None:
    """This process's resident anonymous memory (``RssAnon``) in MiB; None where the system does
    not say (not Linux)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


@functools.cache
def c_library_function(name: str):
    """A function of the C library (``malloc_trim``, ``srand``), or None where it has none (glibc
    has ``malloc_trim``; other C libraries may not)."""
    library = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(library), name) if library else None
    except (OSError, AttributeError):
        return None


def release_free_memory() -> bool:
    """Hands the memory that the C allocator holds free back to the system (glibc's
    ``malloc_trim(0)``); False where that is not available."""
    trim = c_library_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True
