"""Test-set errors of a potential on an aligned dataset, in the paper's units: meV/atom, meV/A, MPa.

Errors are RMSEs over frames (per-atom energy), force components and stress components, overall, per
source dataset and (forces) per element. Frames without forces or stress are skipped for that term.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tea_align
from ase.data import atomic_numbers
from tea_align.units import EV_PER_ANGSTROM3_TO_MPA

from .calculator import periodic_edges

EV_PER_A3_TO_MPA = EV_PER_ANGSTROM3_TO_MPA  # 1 eV/A^3 = 160.2 GPa


@dataclass
class _Acc:
    se: float = 0.0
    n: int = 0

    def add(self, err: np.ndarray) -> None:
        err = np.asarray(err, dtype=np.float64).ravel()
        self.se += float(err @ err)
        self.n += err.size

    def rmse(self) -> float | None:
        return float(np.sqrt(self.se / self.n)) if self.n else None


@dataclass
class Errors:
    """RMSEs: energy meV/atom, forces meV/A, stress MPa; ``None`` where a term has no labels."""

    frames: int = 0
    energy: dict[str, float | None] = field(default_factory=dict)
    forces: dict[str, float | None] = field(default_factory=dict)
    stress: dict[str, float | None] = field(default_factory=dict)
    forces_per_element: dict[str, float | None] = field(default_factory=dict)

    def markdown(self) -> str:
        def f(v):
            return "-" if v is None else f"{v:.2f}"

        lines = ["| source | energy RMSE (meV/atom) | force RMSE (meV/A) | stress RMSE (MPa) |", "|---|---|---|---|"]
        for k in self.energy:
            lines.append(f"| {k} | {f(self.energy[k])} | {f(self.forces.get(k))} | {f(self.stress.get(k))} |")
        lines += ["", "| element | force RMSE (meV/A) |", "|---|---|"]
        lines += [f"| {el} | {f(v)} |" for el, v in self.forces_per_element.items()]
        return "\n".join(lines) + "\n"


def evaluate(potential, dataset_path: str, indices: Sequence[int] | None = None) -> Errors:
    """Errors of ``potential`` (an AllegroPotential) on frames of a tea-align aligned dataset."""
    e_acc: dict[str, _Acc] = defaultdict(_Acc)
    f_acc: dict[str, _Acc] = defaultdict(_Acc)
    s_acc: dict[str, _Acc] = defaultdict(_Acc)
    el_acc: dict[str, _Acc] = defaultdict(_Acc)
    out = Errors()
    with tea_align.open_dataset(dataset_path) as ds:
        idx = range(len(ds)) if indices is None else indices
        for i in idx:
            fr = ds[int(i)]
            try:
                types = potential.types_of(fr.symbols)
            except ValueError as exc:
                raise tea_align.TeaAlignError(str(exc), path=dataset_path, frame=int(i), key=fr.key) from exc
            ei, sh = periodic_edges(fr.positions, fr.cell, fr.pbc, potential.cutoff)
            r = potential.compute(fr.positions, types, ei, fr.n_atoms, sh)
            for key in ("all", fr.source):
                e_acc[key].add(1000.0 * (r.energy - fr.energy) / fr.n_atoms)
            if fr.forces is not None:
                df = 1000.0 * (r.forces - fr.forces)
                for key in ("all", fr.source):
                    f_acc[key].add(df)
                for sym in set(fr.symbols):
                    el_acc[sym].add(df[np.array(fr.symbols) == sym])
            if fr.stress is not None and fr.pbc.all():
                vol = abs(np.linalg.det(fr.cell))
                ds_ = EV_PER_A3_TO_MPA * (-r.virial / vol - fr.stress)
                for key in ("all", fr.source):
                    s_acc[key].add(ds_)
            out.frames += 1
    out.energy = {k: v.rmse() for k, v in e_acc.items()}
    out.forces = {k: f_acc[k].rmse() if k in f_acc else None for k in e_acc}
    out.stress = {k: s_acc[k].rmse() if k in s_acc else None for k in e_acc}
    out.forces_per_element = {k: el_acc[k].rmse() for k in sorted(el_acc, key=lambda s: atomic_numbers[s])}
    return out
