"""Committees: several potentials behind one Potential call, their weighted mean and their spread.

Any mix of the potentials ``load_potential`` returns (eager, compiled, nequip 0.6 TorchScript), or any object with the
engine's Potential members. Energy, forces, virial, per-atom energies and per-atom virials are the weighted means;
``member_forces`` and ``member_weights`` let the caller take the per-atom force deviation on each atom's total force
(the MD engine folds ghost forces first, then asks ``force_deviation``). Members with different cutoffs:
the committee's cutoff is the largest (the neighbour list's), and each member gets only the edges within its own.
Elements: the intersection of the members' (in the first member's order), so that every member can compute every
atom. Members at different levels of theory (``provenance.py``) are refused: their mean would mix energy scales.
Units: eV, Angstrom.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from tea_align.elements import type_indices

from .potential import PotentialResult
from .provenance import UNKNOWN_LEVEL

log = logging.getLogger("allegro_fm_model")


class CommitteePotential:
    """``members`` (Potentials) with ``weights`` (default equal; normalised to sum 1) as one Potential (see the module
    docstring). ``names``: how each member is called in messages (default: its file name or class)."""

    device_edges = False  # each member gets host-filtered edges

    def __init__(
        self,
        members: Sequence,
        weights: Sequence[float] | None = None,
        names: Sequence[str] | None = None,
    ):
        members = list(members)
        if len(members) < 2:
            raise ValueError(f"a committee needs at least two models (got {len(members)})")
        self.members = members
        self.names = [str(n) for n in names] if names is not None else [_name(m) for m in members]
        w = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(members),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise ValueError(
                f"committee weights must be {len(members)} non-negative numbers, not all zero (got {list(w)})"
            )
        self.weights = w / w.sum()
        levels = {str(getattr(m, "level_of_theory", UNKNOWN_LEVEL)) for m in members} - {
            UNKNOWN_LEVEL
        }
        if len(levels) > 1:
            raise ValueError(
                "committee members at different levels of theory ("
                + ", ".join(
                    f"{n}: {getattr(m, 'level_of_theory', UNKNOWN_LEVEL)}"
                    for n, m in zip(self.names, members, strict=True)
                )
                + "): their mean would mix energy scales; align and fine-tune them to one level first"
            )
        self.level_of_theory = levels.pop() if levels else UNKNOWN_LEVEL
        common = set(members[0].species)
        for m in members[1:]:
            common &= set(m.species)
        if not common:
            raise ValueError(f"committee members {self.names} share no element")
        self.species = tuple(s for s in members[0].species if s in common)
        self.cutoffs = [float(m.cutoff) for m in members]
        self.cutoff = max(self.cutoffs)
        self._maps = [np.asarray(m.types_of(self.species), dtype=np.int64) for m in members]
        self._per_atom_virial = False

    def force_deviation(self, member_forces: np.ndarray) -> np.ndarray:
        """Per-atom force deviation (eV/A): sqrt(sum_k w_k |F_ik - F_mean_i|^2), F_mean the weighted mean, from each
        member's total forces (K, n, 3) eV/A (ghost contributions folded in first). With equal weights: the norm of
        the members' per-component population standard deviation (DeePMD's model deviation)."""
        f = np.asarray(member_forces, dtype=np.float64)
        w = self.weights[:, None, None]
        return np.sqrt((w * (f - (w * f).sum(axis=0)) ** 2).sum(axis=(0, 2)))

    def describe(self) -> str:
        """One line: the members, their weights and cutoffs, and the elements the committee covers."""
        parts = ", ".join(
            f"{n} (weight {w:.3g}, cutoff {c:g} A)"
            for n, w, c in zip(self.names, self.weights, self.cutoffs, strict=True)
        )
        return (
            f"committee of {len(self.members)}: {parts}; neighbour list at {self.cutoff:g} A; "
            f"{len(self.species)} elements (the members' common ones): {' '.join(self.species)}"
        )

    @property
    def per_atom_virial(self) -> bool:
        """Per-atom virials from every member (each must support them)."""
        return self._per_atom_virial

    @per_atom_virial.setter
    def per_atom_virial(self, on: bool) -> None:
        for name, m in zip(self.names, self.members, strict=True):
            if on and not hasattr(m, "per_atom_virial"):
                raise ValueError(f"committee member {name} gives no per-atom virials")
            if hasattr(m, "per_atom_virial"):
                m.per_atom_virial = bool(on)
        self._per_atom_virial = bool(on)

    def types_of(self, symbols: Sequence[str]) -> np.ndarray:
        """Type indices into ``species`` (the members' common elements); ValueError naming the first unknown element."""
        return type_indices(self.species, symbols)

    def compute(
        self, positions, types, edge_index, n_local: int, edge_shifts=None
    ) -> PotentialResult:
        """The weighted mean of the members' results (eV, eV/A, virial eV) with each member's forces (module docstring)."""
        pos = np.asarray(positions, dtype=np.float64)
        ei = np.asarray(edge_index, dtype=np.int64).reshape(2, -1)
        t = np.asarray(types, dtype=np.int64)
        r2 = None
        results = []
        for m, lut, rc in zip(self.members, self._maps, self.cutoffs, strict=True):
            sub_e, sub_s = ei, edge_shifts
            if rc < self.cutoff:  # this member sees only its own edges
                if r2 is None:
                    d = pos[ei[1]] - pos[ei[0]]
                    if edge_shifts is not None:
                        d = d + np.asarray(edge_shifts, dtype=np.float64)
                    r2 = np.einsum("ij,ij->i", d, d)
                keep = r2 < rc * rc
                sub_e = ei[:, keep]
                sub_s = None if edge_shifts is None else np.asarray(edge_shifts)[keep]
            results.append(m.compute(pos, lut[t], sub_e, n_local, sub_s))
        w = self.weights

        def mean(name):
            return sum(
                wk * np.asarray(getattr(r, name), dtype=np.float64) for wk, r in zip(w, results)
            )

        per_atom = None
        if self._per_atom_virial:
            per_atom = mean("atomic_virials")
        return PotentialResult(
            energy=float(sum(wk * float(r.energy) for wk, r in zip(w, results))),
            forces=mean("forces"),
            virial=mean("virial"),
            atomic_energies=mean("atomic_energies"),
            atomic_virials=per_atom,
            member_forces=np.stack([np.asarray(r.forces, dtype=np.float64) for r in results]),
            member_weights=w.copy(),
        )


def _name(potential) -> str:
    for attr in ("source", "path"):
        v = getattr(potential, attr, None)
        if v is not None:
            return str(getattr(v, "name", v))
    return type(potential).__name__
