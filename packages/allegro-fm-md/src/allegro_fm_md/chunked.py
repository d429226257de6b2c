"""Memory-bounded force evaluation: any Potential evaluated on chunks of centre atoms, so a model's per-edge
temporaries never hold more than ``max_edges`` edges at once (issue #19: the model's memory grows with its edges).

A strictly local model's energy is a sum over centre atoms of terms that depend only on the edges centred on them
(Allegro: each pair energy E_ij is built from the environment of i alone). So each chunk passes one centre range with
all of its edges, the chunk's centres first as "local" atoms and their neighbours after them as ghosts; the chunk's
energy is that of its centres, its forces land on every atom it touched, its virial is its edges' part. Summed over
chunks this is the unchunked result exactly (to the order of floating-point sums). Written here: neither nequip nor
ASE splits a graph by centres with the local/ghost bookkeeping this engine's contract needs.
"""

from __future__ import annotations

import logging

import numpy as np

from .contracts import DeviceEdgePotential, PotentialResult
from .memory import available_bytes, peak_meter

log = logging.getLogger("allegro_fm_md")
PROBE_EDGES = 4096  # edges of the calibration call of the automatic chunk size
SAFETY = 1.5  # the measured bytes per edge are multiplied by this (allocator slack, other arrays of the step)
#: automatic mode on the CPU: at most this many edges per call, whatever the memory allows. An Allegro call's per-edge
#: temporaries fall out of the caches as calls grow: measured here (shipped model, 4928-atom tobermorite, one thread),
#: compiled 1852 atoms/s whole vs 2976 at 8192 edges per call (2334 at 65536, 2882 at 16384, 2967 at 4096), eager
#: 732 vs 1732 (1672 at 4096, 1539 at 2048). GPUs want large calls: no cap there. Rerun: benchmarks/
#: bench_chunked_memory.py --sizes 5000 --whole-max 6000 --max-edges N [--model FILE.nequip.pt2].
CPU_CALL_EDGES = 8192


class ChunkedPotential:
    """``potential`` evaluated at most ``max_edges`` edges at a time (at least one centre atom per call); the same
    Potential contract (species, cutoff, types_of, compute). ``calls`` counts the inner calls of the last compute.

    ``max_edges=None`` (automatic): the first call with more than PROBE_EDGES edges measures the peak memory of one
    call on that many edges (``memory.peak_meter``: the process's peak resident set on the CPU, the allocator's peak on
    cuda/xpu), and ``max_edges`` becomes ``memory_budget_bytes`` / (bytes per edge x SAFETY). The budget defaults to
    half the device's free memory at that moment divided by ``ranks_sharing`` (the ranks of a node that share the
    device). On the CPU the automatic size is also capped at ``cpu_call_edges`` (default CPU_CALL_EDGES; None: no cap),
    which keeps a call's temporaries in cache: cost per atom then stays flat as systems grow. (The CPU measurement can
    come out low in a process whose allocator reuses pages freed by earlier work: the resident set does not grow; the
    cap bounds the chunks then. GPU allocators count exactly.) A system whose edges fit is
    evaluated in one call, as without this wrapper; a potential that keeps edges on its device (``device_edges``) keeps
    doing so while they fit."""

    def __init__(
        self,
        potential,
        max_edges: int | None,
        memory_budget_bytes: float | None = None,
        ranks_sharing: int = 1,
        cpu_call_edges: int | None = CPU_CALL_EDGES,
    ):
        if max_edges is not None and int(max_edges) < 1:
            raise ValueError(f"max_edges must be >= 1 (got {max_edges})")
        if memory_budget_bytes is not None and not memory_budget_bytes > 0:
            raise ValueError(f"memory_budget_bytes must be > 0 (got {memory_budget_bytes})")
        self.inner = potential
        self.max_edges = None if max_edges is None else int(max_edges)
        self.memory_budget_bytes, self.ranks_sharing = (
            memory_budget_bytes,
            max(int(ranks_sharing), 1),
        )
        if cpu_call_edges is not None and int(cpu_call_edges) < 1:
            raise ValueError(f"cpu_call_edges must be >= 1 or None (got {cpu_call_edges})")
        self.cpu_call_edges = None if cpu_call_edges is None else int(cpu_call_edges)
        self.bytes_per_edge: float | None = None  # measured (automatic mode)
        self.species, self.cutoff = potential.species, potential.cutoff
        self.calls = 0
        self._remap = (
            None  # atom index -> index in the current chunk (-1 outside it), reused between chunks
        )
        self.progress = False  # a progress bar (stderr) over the chunks of an evaluation that lasts more than 10 s

    @property
    def per_atom_virial(self) -> bool:
        """The wrapped potential's switch (contracts.PerAtomVirialPotential); False when it has none."""
        return bool(getattr(self.inner, "per_atom_virial", False))

    @per_atom_virial.setter
    def per_atom_virial(self, on: bool) -> None:
        self.inner.per_atom_virial = bool(on)

    @property
    def members_wanted(self) -> bool:
        """The wrapped committee's switch (contracts.CommitteeLikePotential): True when it has none."""
        return bool(getattr(self.inner, "members_wanted", True))

    @members_wanted.setter
    def members_wanted(self, on: bool) -> None:
        if hasattr(self.inner, "members_wanted"):
            self.inner.members_wanted = bool(on)

    @property
    def device_edges(self) -> bool:
        return isinstance(self.inner, DeviceEdgePotential) and bool(self.inner.device_edges)

    def _device(self):
        return getattr(self.inner, "device", "cpu")

    def _sharing(self) -> int:
        """Ranks that share this rank's device: all of the node's ranks for the CPU, node ranks / devices otherwise."""
        kind = str(self._device()).split(":")[0]
        if kind == "cpu":
            return self.ranks_sharing
        import torch  # lazy: only device paths need torch

        count = getattr(getattr(torch, kind, None), "device_count", lambda: 1)() or 1
        return max(1, -(-self.ranks_sharing // count))

    def _calibrate(self, positions, types, ei, n_local: int, edge_shifts) -> None:
        """Measure the peak memory of one inner call on about PROBE_EDGES edges; set max_edges from the budget."""
        order = np.argsort(ei[0], kind="stable")
        starts = np.searchsorted(ei[0][order], np.arange(n_local + 1))
        c1 = max(int(np.searchsorted(starts, PROBE_EDGES, side="right")) - 1, 1)
        budget = self.memory_budget_bytes
        if budget is None:
            free = available_bytes(self._device())
            budget = 0.5 * free / self._sharing() if free else None
        sub = order[: int(starts[c1])]
        with peak_meter(self._device()) as m:
            self._chunk(
                positions,
                types,
                ei[:, sub],
                np.arange(c1),
                None if edge_shifts is None else np.asarray(edge_shifts)[sub],
            )
        self.bytes_per_edge = (
            None if m["bytes"] is None else max(m["bytes"], 1) / max(int(starts[c1]), 1)
        )
        cap = (
            self.cpu_call_edges
            if str(self._device()).split(":")[0] == "cpu" and self.cpu_call_edges
            else 1 << 62
        )
        if budget is None or self.bytes_per_edge is None:
            self.max_edges = (
                cap  # nothing measurable: no chunking for memory (as without this wrapper)
            )
            log.info(
                "automatic chunk size: memory not measurable on %s; at most %d edges per call",
                self._device(),
                cap,
            )
            return
        self.max_edges = min(max(PROBE_EDGES, int(budget / (self.bytes_per_edge * SAFETY))), cap)
        log.info(
            "automatic chunk size: %.1f KiB per edge measured on %s, budget %.2f GiB -> at most %d edges per call%s",
            self.bytes_per_edge / 1024,
            self._device(),
            budget / 2**30,
            self.max_edges,
            " (the CPU cache cap)" if self.max_edges == cap else "",
        )

    def _limit(self, positions, types, ei, n_local: int, edge_shifts) -> int:
        if self.max_edges is None:
            if ei.shape[1] <= PROBE_EDGES:
                return PROBE_EDGES
            self._calibrate(positions, types, ei, n_local, edge_shifts)
        return self.max_edges

    def compute_from_candidates(
        self, positions, types, candidates, n_local: int, key
    ) -> PotentialResult:
        """The inner potential's device-edge call while the candidate pairs fit the chunk size; else host-filtered edges
        evaluated in chunks."""
        cand = np.asarray(candidates, dtype=np.int64)
        if cand.shape[1] <= self._limit(positions, types, cand, n_local, None):
            self.calls = 1
            return self.inner.compute_from_candidates(positions, types, candidates, n_local, key)
        d = positions[cand[1]] - positions[cand[0]]
        return self.compute(
            positions, types, cand[:, np.einsum("ij,ij->i", d, d) < self.cutoff**2], n_local
        )

    def types_of(self, symbols):
        return self.inner.types_of(symbols)

    def __getattr__(
        self, name
    ):  # device, dtype, describe(), memory_per_edge_bytes ... of the wrapped potential
        return getattr(self.inner, name)

    def compute(
        self, positions, types, edge_index, n_local: int, edge_shifts=None
    ) -> PotentialResult:
        """As the wrapped potential's ``compute`` (eV, eV/A), evaluated in chunks of centre atoms."""
        positions = np.asarray(positions)
        types = np.asarray(types)
        ei = np.asarray(edge_index, dtype=np.int64)
        if ei.shape[1] <= self._limit(positions, types, ei, n_local, edge_shifts):
            self.calls = 1
            return self.inner.compute(positions, types, ei, n_local, edge_shifts)
        if (ei[0] >= n_local).any():
            raise ValueError("edges must be centred on local atoms (i < n_local)")
        order = np.argsort(ei[0], kind="stable")
        ei = ei[:, order]
        shifts = None if edge_shifts is None else np.asarray(edge_shifts)[order]
        # edge ranges per centre atom, then centre ranges whose edges fit max_edges
        starts = np.searchsorted(ei[0], np.arange(n_local + 1))
        forces = np.zeros((len(positions), 3))
        virial = np.zeros((3, 3))
        atomic = np.zeros(n_local)
        per_atom = members = weights = None
        energy = 0.0
        self.calls = 0
        c0 = 0
        bar = self._bar(n_local, ei.shape[1])
        while c0 < n_local:
            # the largest c1 with starts[c1] - starts[c0] <= max_edges (at least one centre)
            c1 = int(np.searchsorted(starts, starts[c0] + self.max_edges, side="right")) - 1
            c1 = min(max(c1, c0 + 1), n_local)
            e0, e1 = int(starts[c0]), int(starts[c1])
            atoms, r = self._chunk(
                positions,
                types,
                ei[:, e0:e1],
                np.arange(c0, c1),
                None if shifts is None else shifts[e0:e1],
            )
            energy += float(r.energy)
            forces[atoms] += np.asarray(r.forces, dtype=np.float64)
            virial += np.asarray(r.virial, dtype=np.float64)
            atomic[c0:c1] = np.asarray(r.atomic_energies, dtype=np.float64)
            if getattr(r, "atomic_virials", None) is not None:
                if per_atom is None:
                    per_atom = np.zeros((n_local, 3, 3))
                per_atom[c0:c1] = r.atomic_virials
            if getattr(r, "member_forces", None) is not None:
                if members is None:
                    members = np.zeros((len(r.member_forces), len(positions), 3))
                    weights = np.asarray(r.member_weights)
                members[:, atoms] += r.member_forces
            self.calls += 1
            if bar is not None:
                bar.update(c1 - c0)
            c0 = c1
        if bar is not None:
            bar.close()
        return PotentialResult(energy, forces, virial, atomic, per_atom, members, weights)

    def _bar(self, n_local: int, n_edges: int):
        """A progress report (tea_align.Progress) over the centre atoms when ``progress`` is on and there are many chunks; shown only once the
        evaluation has lasted 10 s (a 10^6-atom evaluation takes minutes on one core), removed when it ends."""
        if not self.progress or n_edges < 64 * self.max_edges:
            return None
        from tea_align import Progress  # lazy: only large evaluations report progress

        return Progress(
            n_local, desc=f"forces, {n_edges:,} edges", unit="atom", delay=10, leave=False
        )

    def _chunk(self, positions, types, sub_e, centres, shifts):
        """One inner call: ``centres`` as local atoms, the other ends of ``sub_e`` as ghosts; (atoms, result)."""
        others = np.setdiff1d(np.unique(sub_e[1]), centres, assume_unique=False)
        atoms = np.concatenate([centres, others])
        # one index map kept between calls and reset where it was written: a new one per chunk would cost O(all atoms)
        # per chunk, i.e. O(N^2 / max_edges) per evaluation (measurable at 10^6 atoms)
        if self._remap is None or len(self._remap) < len(positions):
            self._remap = np.full(len(positions), -1, dtype=np.int64)
        self._remap[atoms] = np.arange(len(atoms))
        local = self._remap[sub_e]
        self._remap[atoms] = -1
        return atoms, self.inner.compute(
            positions[atoms], types[atoms], local, len(centres), shifts
        )
