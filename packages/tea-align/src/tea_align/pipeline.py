"""The streaming pipeline: read -> validate -> preprocess -> align -> (statistics | write).

Every stage works on FrameBatches, so memory is bounded by the batch size, not the dataset.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .alignment import Alignment, fit_alignment
from .dataset import DatasetWriter
from .elements import NOBLE_GAS_MASK
from .errors import TeaAlignError
from .files import check_output_path
from .frame import FrameBatch
from .progress import Progress
from .readers import InputSpec, read_batches, read_frames
from .stats import DatasetStats
from .units import HARTREE_TO_EV, PAPER_FORCE_THRESHOLD_EV_PER_ANGSTROM

log = logging.getLogger("tea_align")


@dataclass(frozen=True)
class Preprocessing:
    """The paper's preprocessing: drop frames with noble gases and frames whose largest force
    component exceeds ``max_force`` (eV/Angstrom; default 0.25 Hartree/Bohr = 12.86 eV/A; None = keep)."""

    drop_noble_gases: bool = True
    max_force: float | None = PAPER_FORCE_THRESHOLD_EV_PER_ANGSTROM

    def masks(self, batch: FrameBatch) -> dict[str, np.ndarray]:
        """Per reason, the (F,) mask of frames it drops."""
        out = {}
        fid = batch.frame_of_atom()
        if self.drop_noble_gases:
            noble = np.zeros(batch.n_frames, bool)
            noble[fid[NOBLE_GAS_MASK[batch.numbers]]] = True
            out["noble_gas"] = noble
        if self.max_force is not None and batch.n_frames:
            absf = np.nan_to_num(np.abs(batch.forces)).max(axis=1)
            fmax = np.maximum.reduceat(absf, batch.offsets[:-1])
            out["max_force"] = fmax > self.max_force
        return out

    def apply(self, batch: FrameBatch, dropped: dict[str, int]) -> FrameBatch:
        """Frames kept; counts of dropped frames per reason are added to ``dropped``."""
        keep = np.ones(batch.n_frames, bool)
        for reason, m in self.masks(batch).items():
            m = m & keep
            dropped[reason] = dropped.get(reason, 0) + int(m.sum())
            keep &= ~m
        return batch if keep.all() else batch.select(keep)

    def to_dict(self) -> dict:
        return {"drop_noble_gases": self.drop_noble_gases, "max_force_eV_per_A": self.max_force}


def _why_empty(dropped: dict[str, int], preprocessing: Preprocessing) -> str:
    """What dropped every frame, with a hint when it was the force threshold (forces in other units than eV/A?)."""
    parts = [f"{n} frames {reason.replace('_', ' ')}" for reason, n in dropped.items() if n]
    text = "dropped: " + (", ".join(parts) or "none; the inputs hold no frames")
    if dropped.get("max_force") and preprocessing.max_force is not None:
        text += (
            f"; max_force drops frames with a force component above {preprocessing.max_force:.4g} eV/A: forces in "
            "another unit (kcal/mol/A, Hartree/Bohr) look too large; check the units or pass --max-force none"
        )
    return text


def _as_specs(inputs: Iterable[InputSpec | str | Path]) -> list[InputSpec]:
    specs = []
    for x in inputs:
        specs.append(x.resolved() if isinstance(x, InputSpec) else InputSpec.parse(str(x)))
    if not specs:
        raise TeaAlignError("no input datasets given")
    return specs


def energy_scale_ratio(batch: FrameBatch) -> np.ndarray:
    """Per frame, |E| over the sum of its atoms' all-electron energies (eV) estimated as 0.5 Z^2.4 Hartree (within ~3 %
    of the Hartree-Fock atoms for H..Ca). About 1 for all-electron energies in eV, 1/27.2 for Hartree read as eV, 23 for
    kcal/mol, 96 for kJ/mol; valence-only (pseudopotential/PAW) energies in eV give 0.001-0.3."""
    ref = np.add.reduceat(
        0.5 * batch.numbers.astype(np.float64) ** 2.4 * HARTREE_TO_EV, batch.offsets[:-1]
    )
    return np.abs(batch.energy_raw) / ref


#: (low, high, what it looks like) bands of energy_scale_ratio that are warned about
SUSPICIOUS_ENERGY_SCALES = (
    (0.031, 0.043, "Hartree read as eV (x 1/27.2)"),
    (15.0, 35.0, "kcal/mol read as eV (x 23.06)"),
    (60.0, 140.0, "kJ/mol read as eV (x 96.49)"),
    (140.0, np.inf, "not eV at all"),
)


def check_energy_scale(batch: FrameBatch, source: str) -> str | None:
    """A warning (with the numbers) when the median energy-scale ratio of ``batch`` falls in a suspicious band."""
    if batch.n_frames == 0:
        return None
    r = float(np.median(energy_scale_ratio(batch)))
    for lo, hi, what in SUSPICIOUS_ENERGY_SCALES:
        if lo <= r < hi:
            e = float(np.median(batch.energy_raw / np.diff(batch.offsets)))
            return (
                f"{source}: energies look like {what}: median E/atom {e:.6g}, {r:.3g} x the all-electron atom energies "
                "in eV (all-electron eV data: ~1; valence-only: < 0.3); check the units"
            )
    return None


def stream(specs: Sequence[InputSpec], batch_size: int = 4096) -> Iterator[FrameBatch]:
    """Validated FrameBatches of all inputs, one after the other; a warning per input whose energies look like
    another unit than eV (``check_energy_scale`` on its first batch)."""
    for spec in specs:
        first = True
        for batch in read_batches(spec, batch_size):
            batch.validate()
            if first:
                first = False
                warning = check_energy_scale(batch, str(spec.path))
                if warning:
                    log.warning(warning)
            yield batch


def fit(
    anchors: Iterable[InputSpec | str | Path],
    data: Iterable[InputSpec | str | Path] = (),
    *,
    target_level: str,
    atom_energies: dict[str, dict[str, float]] | None = None,
    fix_scale: dict[str, float] | None = None,
    preprocessing: Preprocessing = Preprocessing(),
    batch_size: int = 4096,
    progress: bool = False,
) -> Alignment:
    """Fit an Alignment onto ``target_level``.

    1. ICEA + AEC from ``anchors`` (structures computed at several levels; isolated atoms included).
    2. One streaming pass over ``data`` (the datasets to fuse): preprocessing, alignment, and the
       composition statistics that give per-element reference energies (eV/atom) and residuals
       before/after alignment per source and element (stored in ``Alignment.statistics``).
    """
    anchor_specs = _as_specs(anchors)
    anchor_frames = [f for s in anchor_specs for f in read_frames(s, mixed_levels=True)]
    data_specs = list(_as_specs(data)) if data else []
    levels = {s.source_info().level_of_theory for s in data_specs if s.format != "tea"} - {""}
    al = fit_alignment(
        anchor_frames, target_level, levels=levels, atom_energies=atom_energies, fix_scale=fix_scale
    )
    if not data_specs:
        return al
    stats = DatasetStats()
    bar = Progress(desc="fit: statistics pass", unit="frame", enabled=progress, interval=10.0)
    try:
        for batch in stream(data_specs, batch_size):
            batch = preprocessing.apply(batch, stats.dropped)
            stats.add(batch, al.apply(batch))
            bar.update(batch.n_frames)
    finally:
        bar.close()
    summary = stats.summary()
    if summary["frames"] == 0:
        raise TeaAlignError(
            f"no frames left after preprocessing ({_why_empty(stats.dropped, preprocessing)})",
            path=data_specs[0].path,
        )
    summary["preprocessing"] = preprocessing.to_dict()
    ref = summary.pop("reference_energies", {})
    return replace(al, statistics=summary, reference_energies=ref)


@dataclass(frozen=True)
class ApplySummary:
    """What ``apply`` wrote: path, frames kept, frames dropped per reason, wall time (s)."""

    path: Path
    frames: int
    atoms: int
    dropped: dict[str, int]
    seconds: float


def apply(
    alignment: Alignment,
    data: Iterable[InputSpec | str | Path],
    out: str | Path,
    *,
    preprocessing: Preprocessing = Preprocessing(),
    batch_size: int = 4096,
    compression: str | None = "gzip",
    progress: bool = False,
) -> ApplySummary:
    """Align ``data`` and write one schema-v1 HDF5 file at ``out`` (atomically; nothing on error)."""
    t0 = time.perf_counter()
    specs = _as_specs(data)
    out = check_output_path(out, [s.path for s in specs])
    dropped: dict[str, int] = {}
    n_frames = n_atoms = 0
    bar = Progress(desc="apply", unit="frame", enabled=progress, interval=10.0)
    writer = DatasetWriter(
        out,
        alignment_json=alignment.to_json(),
        target_level=alignment.target_level,
        preprocessing=preprocessing.to_dict(),
        compression=compression,
    )
    try:
        for batch in stream(specs, batch_size):
            batch = alignment.apply(preprocessing.apply(batch, dropped))
            writer.append(batch)
            n_frames += batch.n_frames
            n_atoms += int(batch.offsets[-1])
            bar.update(batch.n_frames)
        if n_frames == 0:
            raise TeaAlignError(
                f"no frames left after preprocessing ({_why_empty(dropped, preprocessing)})",
                path=specs[0].path,
            )
        writer.preprocessing["dropped"] = dropped
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return ApplySummary(out, n_frames, n_atoms, dropped, time.perf_counter() - t0)


def convert(
    data: Iterable[InputSpec | str | Path],
    out: str | Path,
    *,
    batch_size: int = 4096,
    compression: str | None = "gzip",
    progress: bool = False,
) -> ApplySummary:
    """Ingest datasets unchanged (validated, no preprocessing, no alignment) into one schema-v1 file."""
    t0 = time.perf_counter()
    specs = _as_specs(data)
    out = check_output_path(out, [s.path for s in specs])
    n_frames = n_atoms = 0
    bar = Progress(desc="convert", unit="frame", enabled=progress, interval=10.0)
    try:
        with DatasetWriter(out, compression=compression) as writer:
            for batch in stream(specs, batch_size):
                writer.append(batch)
                n_frames += batch.n_frames
                n_atoms += int(batch.offsets[-1])
                bar.update(batch.n_frames)
    finally:
        bar.close()
    return ApplySummary(Path(out), n_frames, n_atoms, {}, time.perf_counter() - t0)


def inspect(
    data: Iterable[InputSpec | str | Path], batch_size: int = 4096, progress: bool = False
) -> dict:
    """Counts per element and source, energy ranges (eV/atom) and largest force (eV/A) of datasets."""
    stats = DatasetStats()
    bar = Progress(desc="inspect", unit="frame", enabled=progress, interval=10.0)
    try:
        for batch in stream(_as_specs(data), batch_size):
            stats.add(
                batch, batch
            )  # "aligned" ranges: the energies a file holds for training (= raw for unaligned sources)
            bar.update(batch.n_frames)
    finally:
        bar.close()
    s = stats.summary()
    return {
        "frames": s["frames"],
        "sources": s["sources"],
        "elements": {
            k: {"atoms": v["atoms"], "frames": v["frames"]} for k, v in s["elements"].items()
        },
    }
