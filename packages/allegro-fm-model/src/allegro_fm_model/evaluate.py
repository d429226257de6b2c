"""Test-set errors of a potential on an aligned dataset, in the paper's units: meV/atom, meV/A, MPa.

Errors are RMSEs over frames (per-atom energy), force components and stress components, overall, per
source dataset (or per frame key, e.g. a structure family written as extxyz ``config_type``) and (forces) per
element, with the force cosine (sum F_model . F_label / (|F_model| |F_label|) over the group's atoms: 1 is a perfect
direction field, below ~0.9 many forces point the wrong way). Frames without forces or stress are skipped for that term.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import tea_align
from ase.data import atomic_numbers
from tea_align.units import EV_PER_ANGSTROM3_TO_MPA

from .edges import periodic_edges
from .provenance import UNKNOWN_LEVEL, check_levels, level_of

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
    force_cosine: dict[str, float | None] = field(default_factory=dict)
    by: str = "source"
    #: per-element energy offsets (eV) added to the model's energies before the energy RMSEs (``refit_offsets``); empty: none
    offsets: dict[str, float] = field(default_factory=dict)

    def markdown(self) -> str:
        def f(v, fmt=".2f"):
            return "-" if v is None else f"{v:{fmt}}"

        lines = [
            f"| {self.by} | energy RMSE (meV/atom) | force RMSE (meV/A) | force cosine | stress RMSE (MPa) |",
            "|---|---|---|---|---|",
        ]
        for k in self.energy:
            lines.append(
                f"| {k} | {f(self.energy[k])} | {f(self.forces.get(k))} | {f(self.force_cosine.get(k), '.3f')} | "
                f"{f(self.stress.get(k))} |"
            )
        lines += ["", "| element | force RMSE (meV/A) |", "|---|---|"]
        lines += [f"| {el} | {f(v)} |" for el, v in self.forces_per_element.items()]
        if self.offsets:
            lines += [
                "",
                "Energies after refitting per-element offsets (eV, added to the model's energies): "
                + ", ".join(f"{el} {v:+.4f}" for el, v in self.offsets.items()),
            ]
        return "\n".join(lines) + "\n"


@dataclass
class _Cos:
    dot: float = 0.0
    a: float = 0.0
    b: float = 0.0

    def add(self, pred: np.ndarray, ref: np.ndarray) -> None:
        pred, ref = np.asarray(pred, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
        self.dot += float(pred @ ref)
        self.a += float(pred @ pred)
        self.b += float(ref @ ref)

    def value(self) -> float | None:
        return self.dot / np.sqrt(self.a * self.b) if self.a > 0 and self.b > 0 else None


def fit_energy_offsets(
    residual: np.ndarray, counts: np.ndarray, elements: Sequence[str]
) -> dict[str, float]:
    """Per-element energy offsets d (eV) minimising |counts @ d - residual|^2: ``residual`` (F,) label minus model energy
    (eV) per frame, ``counts`` (F, K) atoms of each of ``elements`` per frame (least squares, minimum norm where the
    compositions do not determine every offset)."""
    d, *_ = np.linalg.lstsq(
        np.asarray(counts, np.float64), np.asarray(residual, np.float64), rcond=None
    )
    return {el: float(v) for el, v in zip(elements, d)}


def energy_offsets(
    potential, dataset_path: str, indices: Sequence[int] | None = None
) -> dict[str, float]:
    """The per-element offsets (eV) that bring ``potential``'s energies onto the energies of a dataset's frames (another
    level of theory): ``fit_energy_offsets`` over the frames ``indices`` (default all)."""
    res, counts = [], []
    species = list(potential.species)
    with tea_align.open_dataset(dataset_path) as ds:
        for i in range(len(ds)) if indices is None else indices:
            fr = ds[int(i)]
            types = potential.types_of(fr.symbols)
            ei, sh = periodic_edges(fr.positions, fr.cell, fr.pbc, potential.cutoff)
            res.append(
                fr.energy - potential.compute(fr.positions, types, ei, fr.n_atoms, sh).energy
            )
            counts.append(np.bincount(types, minlength=len(species)))
    if not res:
        raise ValueError(f"{dataset_path}: no frames to fit energy offsets on")
    return _fit_present(np.array(res), np.array(counts), species)


def _fit_present(residual: np.ndarray, counts: np.ndarray, species) -> dict[str, float]:
    """``fit_energy_offsets`` over the elements that occur in the frames (columns of ``counts`` that are not all 0)."""
    present = np.flatnonzero(counts.sum(axis=0))
    return fit_energy_offsets(residual, counts[:, present], [species[k] for k in present])


def evaluate(
    potential,
    dataset_path: str,
    indices: Sequence[int] | None = None,
    by: str = "source",
    refit_offsets: bool = False,
) -> Errors:
    """Errors of ``potential`` (an AllegroPotential) on frames of a tea-align aligned dataset, grouped ``by`` "source"
    (the dataset each frame came from) or "key" (each frame's key, e.g. its structure family). ``refit_offsets``: the
    energy errors are taken after per-element offsets fitted on these frames (data at another level of theory; the
    offsets are in ``Errors.offsets``); forces and stress do not depend on them. Data at another level of theory than
    the potential's ``level_of_theory`` is refused (``provenance.LevelMismatchError``) unless ``refit_offsets``."""
    if by not in ("source", "key"):
        raise ValueError(f"by must be 'source' or 'key', not {by!r}")
    e_acc: dict[str, _Acc] = defaultdict(_Acc)
    frames_e: list[tuple[str, float, int]] = []  # (group, label - model energy eV, atoms)
    counts: list[np.ndarray] = []  # atoms of each species per frame (only to refit offsets)
    f_acc: dict[str, _Acc] = defaultdict(_Acc)
    s_acc: dict[str, _Acc] = defaultdict(_Acc)
    el_acc: dict[str, _Acc] = defaultdict(_Acc)
    cos: dict[str, _Cos] = defaultdict(_Cos)
    out = Errors(by=by)
    with tea_align.open_dataset(dataset_path) as ds:
        check_levels(
            getattr(potential, "level_of_theory", UNKNOWN_LEVEL),
            level_of(ds),
            str(getattr(potential, "source", "model")),
            str(dataset_path),
            refit=refit_offsets,
        )
        idx = range(len(ds)) if indices is None else indices
        for i in idx:
            fr = ds[int(i)]
            try:
                types = potential.types_of(fr.symbols)
            except ValueError as exc:
                raise tea_align.TeaAlignError(
                    str(exc), path=dataset_path, frame=int(i), key=fr.key
                ) from exc
            ei, sh = periodic_edges(fr.positions, fr.cell, fr.pbc, potential.cutoff)
            r = potential.compute(fr.positions, types, ei, fr.n_atoms, sh)
            group = fr.source if by == "source" else (fr.key or "(no key)")
            frames_e.append((group, fr.energy - r.energy, fr.n_atoms))
            if refit_offsets:
                counts.append(np.bincount(types, minlength=len(potential.species)))
            if fr.forces is not None:
                df = 1000.0 * (r.forces - fr.forces)
                for key in ("all", group):
                    f_acc[key].add(df)
                    cos[key].add(r.forces, fr.forces)
                for sym in set(fr.symbols):
                    el_acc[sym].add(df[np.array(fr.symbols) == sym])
            if fr.stress is not None and fr.pbc.all():
                vol = abs(np.linalg.det(fr.cell))
                ds_ = EV_PER_A3_TO_MPA * (-r.virial / vol - fr.stress)
                for key in ("all", group):
                    s_acc[key].add(ds_)
            out.frames += 1
    shift = np.zeros(len(frames_e))
    if refit_offsets and frames_e:
        c = np.array(counts)
        out.offsets = _fit_present(np.array([x[1] for x in frames_e]), c, potential.species)
        shift = c[:, [potential.species.index(el) for el in out.offsets]] @ np.array(
            list(out.offsets.values())
        )
    for (group, res, n), d in zip(frames_e, shift):
        for key in ("all", group):
            e_acc[key].add(1000.0 * (d - res) / n)
    out.energy = {k: v.rmse() for k, v in e_acc.items()}
    out.forces = {k: f_acc[k].rmse() if k in f_acc else None for k in e_acc}
    out.stress = {k: s_acc[k].rmse() if k in s_acc else None for k in e_acc}
    out.force_cosine = {k: cos[k].value() if k in cos else None for k in e_acc}
    out.forces_per_element = {
        k: el_acc[k].rmse() for k in sorted(el_acc, key=lambda s: atomic_numbers[s])
    }
    return out
