"""The streaming pipeline: read -> validate -> preprocess -> align -> (statistics | write).

Every stage works on FrameBatches, so memory is bounded by the batch size, not the dataset.
"""

from __future__ import annotations

import logging
import sys
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
from .readers import InputSpec, read_batches, read_frames
from .stats import DatasetStats
from .units import PAPER_FORCE_THRESHOLD_EV_PER_ANGSTROM

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


class Progress:
    """A frames/s progress bar: tqdm when installed, else a log line every few seconds on stderr."""

    def __init__(self, desc: str, total: int | None = None, enabled: bool = True):
        self.n, self.t0, self.last, self.desc, self.enabled = 0, time.perf_counter(), 0.0, desc, enabled
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm  # lazy: optional progress bar

                self.bar = tqdm(total=total, desc=desc, unit="frame", unit_scale=True, file=sys.stderr)
            except ImportError:
                pass

    def update(self, n: int) -> None:
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and time.perf_counter() - self.last > 5:
            self.last = time.perf_counter()
            rate = self.n / max(self.last - self.t0, 1e-9)
            print(f"{self.desc}: {self.n} frames, {rate:.0f} frames/s", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _as_specs(inputs: Iterable[InputSpec | str | Path]) -> list[InputSpec]:
    specs = []
    for x in inputs:
        specs.append(x.resolved() if isinstance(x, InputSpec) else InputSpec.parse(str(x)))
    if not specs:
        raise TeaAlignError("no input datasets given")
    return specs


def stream(specs: Sequence[InputSpec], batch_size: int = 4096) -> Iterator[FrameBatch]:
    """Validated FrameBatches of all inputs, one after the other."""
    for spec in specs:
        for batch in read_batches(spec, batch_size):
            batch.validate()
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
    al = fit_alignment(anchor_frames, target_level, levels=levels, atom_energies=atom_energies, fix_scale=fix_scale)
    if not data_specs:
        return al
    stats = DatasetStats()
    bar = Progress("fit: statistics pass", enabled=progress)
    try:
        for batch in stream(data_specs, batch_size):
            batch = preprocessing.apply(batch, stats.dropped)
            stats.add(batch, al.apply(batch))
            bar.update(batch.n_frames)
    finally:
        bar.close()
    summary = stats.summary()
    if summary["frames"] == 0:
        raise TeaAlignError("no frames left after preprocessing (empty dataset)", path=data_specs[0].path)
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
    bar = Progress("apply", enabled=progress)
    writer = DatasetWriter(out, alignment_json=alignment.to_json(), target_level=alignment.target_level,
                           preprocessing=preprocessing.to_dict(), compression=compression)
    try:
        for batch in stream(specs, batch_size):
            batch = alignment.apply(preprocessing.apply(batch, dropped))
            writer.append(batch)
            n_frames += batch.n_frames
            n_atoms += int(batch.offsets[-1])
            bar.update(batch.n_frames)
        writer.preprocessing["dropped"] = dropped
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return ApplySummary(out, n_frames, n_atoms, dropped, time.perf_counter() - t0)


def convert(data: Iterable[InputSpec | str | Path], out: str | Path, *, batch_size: int = 4096,
            compression: str | None = "gzip", progress: bool = False) -> ApplySummary:
    """Ingest datasets unchanged (validated, no preprocessing, no alignment) into one schema-v1 file."""
    t0 = time.perf_counter()
    specs = _as_specs(data)
    out = check_output_path(out, [s.path for s in specs])
    n_frames = n_atoms = 0
    bar = Progress("convert", enabled=progress)
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


def inspect(data: Iterable[InputSpec | str | Path], batch_size: int = 4096, progress: bool = False) -> dict:
    """Counts per element and source, energy ranges (eV/atom) and largest force (eV/A) of datasets."""
    stats = DatasetStats()
    bar = Progress("inspect", enabled=progress)
    try:
        for batch in stream(_as_specs(data), batch_size):
            stats.add(batch)
            bar.update(batch.n_frames)
    finally:
        bar.close()
    s = stats.summary()
    return {"frames": s["frames"], "sources": s["sources"],
            "elements": {k: {"atoms": v["atoms"], "frames": v["frames"]} for k, v in s["elements"].items()}}
