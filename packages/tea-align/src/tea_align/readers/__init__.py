"""Streaming readers: every supported format yields ``Frame``s in eV / Angstrom / eV/A / eV/A^3.

``InputSpec`` names one input file with its format, source name and level of theory;
``read_frames`` streams typed frames, ``read_batches`` streams FrameBatches (schema-v1 files take a
vectorised fast path). Formats: ``ase`` (extxyz and anything ase.io reads), ``mptrj`` (JSON),
``spice`` (SPICE/OFF-style HDF5), ``transition1x`` (HDF5), ``tea`` (schema-v1 files, e.g. an
unaligned ingest made by ``tea-align convert``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from ..dataset import open_dataset
from ..errors import TeaAlignError
from ..frame import Frame, FrameBatch, SourceInfo, rebatch
from .ase_formats import read_ase
from .hdf5_molecular import SPICE_LEVEL, T1X_LEVEL, read_spice, read_transition1x
from .mptrj import DEFAULT_LEVEL as MPTRJ_LEVEL
from .mptrj import read_mptrj

FORMATS = ("ase", "mptrj", "spice", "transition1x", "tea")
DEFAULT_LEVELS = {"mptrj": MPTRJ_LEVEL, "spice": SPICE_LEVEL, "transition1x": T1X_LEVEL}

__all__ = [
    "FORMATS",
    "InputSpec",
    "detect_format",
    "read_batches",
    "read_frames",
    "read_ase",
    "read_mptrj",
    "read_spice",
    "read_transition1x",
]


def default_name(path: str | Path) -> str:
    """An input's source name when none is given: its file name without the format suffix (and a compression suffix
    before it): ``mptrj.v2.json`` -> ``mptrj.v2``, ``spice-2.0.1.hdf5`` -> ``spice-2.0.1``, ``md.extxyz.gz`` -> ``md``."""
    name = Path(path).name
    for ext in (".gz", ".xz", ".bz2"):
        name = name.removesuffix(ext)
    return Path(name).stem or name


@dataclass(frozen=True)
class InputSpec:
    """One input file. ``format`` None = detect; ``name`` None = ``default_name``; ``level`` None = format default.

    ``options`` are passed to the reader (e.g. ``energy_key`` for ase formats).
    """

    path: Path
    format: str | None = None
    name: str | None = None
    level: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> InputSpec:
        """Parse ``PATH[,format=F][,name=N][,level=L][,energy_key=K]...`` (the CLI's input syntax). A comma starts a new
        option only where ``key=`` follows it, so level names with commas ("wB97M-D3(BJ)/def2-TZVPPD (Psi4, SPICE/OFF23)")
        can be written; the CLI's ``--level NAME=LEVEL`` sets a level outside the list."""
        path, *kvs = re.split(r",(?=[A-Za-z_][A-Za-z0-9_]*=)", str(text))
        kw: dict = {}
        opts = []
        for kv in kvs:
            if "=" not in kv:
                raise TeaAlignError(f"input option {kv!r} is not key=value", path=path)
            k, v = kv.split("=", 1)
            if k in ("format", "name", "level"):
                kw[k] = v
            else:
                opts.append((k, v))
        return cls(Path(path), options=tuple(opts), **kw).resolved()

    def resolved(self) -> InputSpec:
        """Fill in format and name; checks that the file exists and the format is known."""
        if not self.path.exists():
            hint = (
                " (options are written ,key=value after the path)" if "," in self.path.name else ""
            )
            raise TeaAlignError("file not found" + hint, path=self.path)
        fmt = self.format or detect_format(self.path)
        if fmt not in FORMATS:
            raise TeaAlignError(
                f"unknown format {fmt!r}; known: {', '.join(FORMATS)}", path=self.path
            )
        return replace(self, format=fmt, name=self.name or default_name(self.path))

    def source_info(self) -> SourceInfo:
        spec = self.resolved()
        level = spec.level or DEFAULT_LEVELS.get(spec.format, "")
        return SourceInfo(
            name=spec.name, path=str(spec.path), format=spec.format, level_of_theory=level
        )


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its name and, for HDF5, its layout."""
    path = Path(path)
    suffix = "".join(path.suffixes[-1:]).lower()
    if suffix == ".json":
        return "mptrj"
    if suffix in (".h5", ".hdf5", ".hdf"):
        import h5py  # lazy: HDF5 only for .h5 files

        try:
            with h5py.File(path, "r") as h5:
                if "schema" in h5.attrs:
                    return "tea"
                keys = set(h5.keys())
                if keys and keys <= {"train", "val", "test"}:
                    return "transition1x"
                return "spice"
        except OSError as exc:
            raise TeaAlignError(f"not a readable HDF5 file ({exc})", path=path) from exc
    return "ase"


def read_frames(spec: InputSpec | str | Path, mixed_levels: bool = False) -> Iterator[Frame]:
    """Stream typed frames of one input (``mixed_levels``: an ase-format file may hold several levels)."""
    if not isinstance(spec, InputSpec):
        spec = InputSpec(Path(spec))
    spec = spec.resolved()
    info = spec.source_info()
    opts = dict(spec.options)
    if spec.format == "ase":
        return read_ase(
            spec.path,
            source=info.name,
            level_of_theory=spec.level,
            mixed_levels=mixed_levels,
            **opts,
        )
    if spec.format == "tea":
        return (f for b in read_batches(spec) for f in b)
    reader = {"mptrj": read_mptrj, "spice": read_spice, "transition1x": read_transition1x}[
        spec.format
    ]
    return reader(spec.path, source=info.name, level_of_theory=info.level_of_theory, **opts)


def read_batches(spec: InputSpec | str | Path, size: int = 4096) -> Iterator[FrameBatch]:
    """Stream FrameBatches of one input (at most ``size`` frames each)."""
    if not isinstance(spec, InputSpec):
        spec = InputSpec(Path(spec))
    spec = spec.resolved()
    if spec.format == "tea":
        with open_dataset(spec.path) as ds:
            yield from ds.batches(size)
        return
    info = spec.source_info()
    frames = read_frames(spec)
    if spec.format == "ase" and not spec.level:
        # the level comes from the frames themselves: peek at the first one
        first = next(frames)
        info = replace(info, level_of_theory=first.level_of_theory)
        frames = _chain(first, frames)
    yield from rebatch(frames, info, size)


def _chain(first: Frame, rest: Iterator[Frame]) -> Iterator[Frame]:
    yield first
    yield from rest
