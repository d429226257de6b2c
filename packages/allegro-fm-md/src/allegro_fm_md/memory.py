"""How much memory a device has free, and how much one call used at its peak (bytes): the inputs of the automatic
chunk size (chunked.py). CPU: /proc/meminfo's MemAvailable and the process's peak resident set (VmHWM, reset through
/proc/self/clear_refs; Linux); cuda/xpu: torch's allocator statistics. Written here: psutil has no peak reset and
torch has no CPU allocator statistics."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
from pathlib import Path

log = logging.getLogger(__name__)


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


def _trim() -> None:
    """Return the C allocator's free memory to the system (glibc malloc_trim): otherwise a block that reuses memory freed
    earlier in the process adds nothing to the resident set and its peak reads as 0 (seen after a model was loaded)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


@contextlib.contextmanager
def _cpu_peak(out: dict):
    """The CPU meter: VmHWM (reset through clear_refs) or the resident set at exit, above VmRSS at entry (bytes).
    Garbage is collected first: earlier objects freed inside the block would lower the resident set under the level at
    entry and hide the block's own growth (seen in a long test session: 64 MiB written read as 0)."""
    gc.collect()
    _trim()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
        start = _proc_kib("/proc/self/status", "VmRSS")
    except OSError:
        start = None
    yield out
    peak = max(
        _proc_kib("/proc/self/status", "VmHWM") or 0, _proc_kib("/proc/self/status", "VmRSS") or 0
    )
    if start is not None and peak:
        out["bytes"] = max(peak - start, 0) * 1024


@functools.lru_cache(maxsize=1)
def cpu_peak_measurable() -> bool:
    """Whether this process's peak resident set shows memory it touches: 32 MiB written inside the meter must read as
    at least 24 MiB, in one of three tries. False on kernels without clear_refs/VmHWM, and where the resident-set counters
    lag."""
    for _ in range(3):
        probe: dict = {"bytes": None}
        with _cpu_peak(probe):
            buf = b"\x01" * (32 << 20)  # written, so resident
        del buf
        if probe["bytes"] is not None and probe["bytes"] >= 24 << 20:
            return True
    log.warning(
        "the peak resident set of this process is not measurable here (32 MiB written read as %s bytes): CPU "
        "memory use is reported as unknown",
        probe["bytes"],
    )
    return False


@contextlib.contextmanager
def peak_meter(device="cpu"):
    """``with peak_meter(dev) as m: ...`` then ``m["bytes"]``: the peak memory above the level at entry (bytes) used
    inside the block, or None where it cannot be measured. CPU: peak resident set of this process (VmHWM after a reset;
    None where ``cpu_peak_measurable()`` is False)."""
    kind = str(device).split(":")[0]
    out: dict = {"bytes": None}
    if kind == "cpu":
        if not cpu_peak_measurable():
            yield out
            return
        with _cpu_peak(out):
            yield out
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


def process_resident_bytes() -> int | None:
    """This process's resident set (bytes, VmRSS), None where it cannot be read."""
    kib = _proc_kib("/proc/self/status", "VmRSS")
    return None if kib is None else kib * 1024
