"""Counter-based random numbers: noise that depends only on (seed, stream, step, atom id, component), never on which
rank holds an atom or in what order, so a Langevin run gives the same trajectory on any number of ranks and a restart
continues the same noise on any rank count (JAX's and OpenMM's reasoning; LAMMPS's per-processor generators do not).

Each number is a SplitMix64 hash (Steele, Lea & Flood 2014; the finaliser of Java's SplittableRandom, which passes
BigCrush used as a counter hash) of the nested key, turned into uniforms on (0, 1] and into standard normals by
Box-Muller. Written here because numpy's counter-based Philox has no vectorised way to key one number per atom id.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
#: streams in use (so two kinds of noise with one seed never share numbers)
LANGEVIN, BAROSTAT = 1, 2


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 of uint64 ``x`` (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _key(seed: int, stream: int, step: int) -> np.uint64:
    k = _mix(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))
    k = _mix(k ^ np.uint64(int(stream) & 0xFFFFFFFFFFFFFFFF))
    return _mix(k ^ np.uint64(int(step) & 0xFFFFFFFFFFFFFFFF))[0]


def uniform(seed: int, stream: int, step: int, counters: np.ndarray) -> np.ndarray:
    """Uniforms on (0, 1] (53 bits), one per entry of the integer array ``counters``, keyed by (seed, stream, step)."""
    c = np.asarray(counters).astype(np.uint64)
    bits = _mix(c ^ _key(seed, stream, step))
    return ((bits >> np.uint64(11)).astype(np.float64) + 1.0) * (1.0 / 9007199254740992.0)


def standard_normal(seed: int, stream: int, step: int, ids: np.ndarray, n: int = 3) -> np.ndarray:
    """(len(ids), n) standard normals for atoms ``ids`` (global ids) at ``step``: the same numbers for an atom whichever
    rank asks for them."""
    ids = np.asarray(ids, dtype=np.int64)
    j = np.arange(n, dtype=np.int64)
    base = (ids[:, None] * n + j[None, :]) * 2  # two uniforms per normal
    u1 = uniform(seed, stream, step, base)
    u2 = uniform(seed, stream, step, base + 1)
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
