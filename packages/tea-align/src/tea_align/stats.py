"""Streaming statistics of a dataset: composition least squares and residuals per source and element.

A per-atom composition model E/N = sum_Z (n_Z/N) e_Z is fitted to all frames at once. Before
alignment, frames of different levels disagree by their core references and its residuals are
large; after alignment they should be small. The fit is accumulated as normal equations
(A = sum x x^T, b = sum x y, c = sum y^2) per group, so memory does not grow with the number of
frames and the residual RMSE of any group follows exactly from (A, b, c) and the fitted e.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .elements import MAX_Z, z_to_symbol
from .frame import FrameBatch

D = MAX_Z + 1


@dataclass
class _Normal:
    A: np.ndarray = field(default_factory=lambda: np.zeros((D, D)))
    b: np.ndarray = field(default_factory=lambda: np.zeros(D))
    c: float = 0.0
    n: int = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.A += x.T @ x
        self.b += x.T @ y
        self.c += float(y @ y)
        self.n += len(y)

    def rmse(self, w: np.ndarray) -> float:
        if self.n == 0:
            return float("nan")
        sse = self.c - 2.0 * w @ self.b + w @ self.A @ w
        return float(np.sqrt(max(sse, 0.0) / self.n))

    def __iadd__(self, other: _Normal) -> _Normal:
        self.A += other.A
        self.b += other.b
        self.c += other.c
        self.n += other.n
        return self


def solve(nrm: _Normal) -> np.ndarray:
    """Per-element energies (D,) minimising the per-atom squared residual; 0 for absent elements."""
    present = np.flatnonzero(np.diag(nrm.A) > 0)
    w = np.zeros(D)
    if len(present):
        sub = nrm.A[np.ix_(present, present)]
        w[present] = np.linalg.lstsq(sub, nrm.b[present], rcond=None)[0]
    return w


@dataclass
class DatasetStats:
    """Accumulates counts, energy ranges and the composition normal equations (raw and aligned)."""

    by_source: dict[str, dict] = field(default_factory=dict)
    element_atoms: np.ndarray = field(default_factory=lambda: np.zeros(D, np.int64))
    element_frames: np.ndarray = field(default_factory=lambda: np.zeros(D, np.int64))
    raw_src: dict[str, _Normal] = field(default_factory=dict)
    al_src: dict[str, _Normal] = field(default_factory=dict)
    raw_el: dict[int, _Normal] = field(default_factory=dict)
    al_el: dict[int, _Normal] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)

    def add(self, batch: FrameBatch, aligned: FrameBatch | None = None) -> None:
        """Add a validated batch; ``aligned`` is the same batch after ``Alignment.apply``."""
        if batch.n_frames == 0:
            return
        comp = batch.composition()
        n = batch.n_atoms.astype(float)
        x = comp / n[:, None]
        y_raw = batch.energy_raw / n
        y_al = aligned.energy / n if aligned is not None else None
        self.element_atoms += comp.sum(axis=0)
        has = comp > 0
        self.element_frames += has.sum(axis=0)
        fmax = np.zeros(batch.n_frames)
        if batch.forces.size:
            absf = np.nan_to_num(np.abs(batch.forces)).max(axis=1)
            fmax = np.maximum.reduceat(absf, batch.offsets[:-1]) if batch.n_frames else fmax
        for sid, src in enumerate(batch.sources):
            sel = batch.source_id == sid
            if not sel.any():
                continue
            name = src.name
            s = self.by_source.setdefault(
                name,
                {
                    "level_of_theory": src.level_of_theory,
                    "path": src.path,
                    "format": src.format,
                    "frames": 0,
                    "atoms": 0,
                    "energy_per_atom_min": np.inf,
                    "energy_per_atom_max": -np.inf,
                    "max_abs_force": 0.0,
                    "aligned_energy_per_atom_min": np.inf,
                    "aligned_energy_per_atom_max": -np.inf,
                },
            )
            s["frames"] += int(sel.sum())
            s["atoms"] += int(n[sel].sum())
            s["energy_per_atom_min"] = min(s["energy_per_atom_min"], float(y_raw[sel].min()))
            s["energy_per_atom_max"] = max(s["energy_per_atom_max"], float(y_raw[sel].max()))
            s["max_abs_force"] = max(s["max_abs_force"], float(fmax[sel].max()))
            self.raw_src.setdefault(name, _Normal()).add(x[sel], y_raw[sel])
            if y_al is not None:
                s["aligned_energy_per_atom_min"] = min(
                    s["aligned_energy_per_atom_min"], float(y_al[sel].min())
                )
                s["aligned_energy_per_atom_max"] = max(
                    s["aligned_energy_per_atom_max"], float(y_al[sel].max())
                )
                self.al_src.setdefault(name, _Normal()).add(x[sel], y_al[sel])
        for z in np.flatnonzero(has.any(axis=0)):
            rows = has[:, z]
            self.raw_el.setdefault(int(z), _Normal()).add(x[rows], y_raw[rows])
            if y_al is not None:
                self.al_el.setdefault(int(z), _Normal()).add(x[rows], y_al[rows])

    def summary(self) -> dict:
        """JSON-ready statistics: per source and per element counts and residual RMSEs (eV/atom)."""
        out: dict = {"sources": {}, "elements": {}, "dropped": dict(self.dropped)}
        tot_raw, tot_al = _Normal(), _Normal()
        for v in self.raw_src.values():
            tot_raw += v
        for v in self.al_src.values():
            tot_al += v
        w_raw = solve(tot_raw)
        w_al = solve(tot_al) if tot_al.n else None
        for name, s in self.by_source.items():
            d = {
                k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in s.items()
            }
            d["rmse_before"] = self.raw_src[name].rmse(w_raw)
            d["rmse_after"] = (
                self.al_src[name].rmse(w_al) if w_al is not None and name in self.al_src else None
            )
            out["sources"][name] = d
        for z in np.flatnonzero(self.element_atoms):
            z = int(z)
            out["elements"][z_to_symbol(z)] = {
                "atoms": int(self.element_atoms[z]),
                "frames": int(self.element_frames[z]),
                "rmse_before": self.raw_el[z].rmse(w_raw),
                "rmse_after": self.al_el[z].rmse(w_al)
                if w_al is not None and z in self.al_el
                else None,
            }
        out["rmse_before"] = tot_raw.rmse(w_raw)
        out["rmse_after"] = tot_al.rmse(w_al) if w_al is not None else None
        out["frames"] = tot_raw.n
        if w_al is not None:
            out["reference_energies"] = {
                z_to_symbol(int(z)): float(w_al[z]) for z in np.flatnonzero(self.element_atoms)
            }
        return out
