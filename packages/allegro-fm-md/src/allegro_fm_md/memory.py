"""How much memory a device has free, and how much one call used at its peak (bytes): the inputs of the automatic
chunk size (chunked.py). CPU: /proc/meminfo's MemAvailable and the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs; Linux); cuda/xpu: torch's allocator statistics. Written here: psutil has no peak reset and
torch has no CPU allocator statistics."""

from __future__ import annotations

import contextlib
from pathlib import Path


def _proc_kib(path: str, key: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def available_bytes(device="cpu") -> int | None:
    """Free memory (bytes) of ``device`` (a torch device or its name): MemAvailable for the CPU, the allocator's free
    memory for cuda/xpu; None when it cannot be read."""
    kind = str(device).split(":")[0]
    if kind == "cpu":
        kib = _proc_kib("/proc/meminfo", "MemAvailable")
        return None if kib is None else kib * 1024
    import torch  # lazy: only device paths need torch

    backend = getattr(torch, kind, None)
    if backend is None or not hasattr(backend, "mem_get_info"):
        return None
    return int(backend.mem_get_info(torch.device(device))[0])


@contextlib.contextmanager
def peak_meter(device="cpu"):
    """``with peak_meter(dev) as m: ...`` then ``m["bytes"]``: the peak memory above the level at entry (bytes) used
    inside the block, or None where it cannot be measured. CPU: peak resident set of this process (VmHWM after a reset)."""
    kind = str(device).split(":")[0]
    out: dict = {"bytes": None}
    if kind == "cpu":
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
            start = _proc_kib("/proc/self/status", "VmRSS")
        except OSError:
            start = None
        yield out
        peak = _proc_kib("/proc/self/status", "VmHWM")
        if start is not None and peak is not None:
            out["bytes"] = max(peak - start, 0) * 1024
        return
    import torch  # lazy: only device paths need torch

    backend = getattr(torch, kind, None)
    if backend is None or not hasattr(backend, "max_memory_allocated"):
        yield out
        return
    dev = torch.device(device)
    backend.reset_peak_memory_stats(dev)
    start = backend.memory_allocated(dev)
    yield out
    out["bytes"] = int(backend.max_memory_allocated(dev) - start)
