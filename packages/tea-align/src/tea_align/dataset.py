"""The aligned-dataset file, schema v1 (HDF5), its atomic writer and its streaming reader.

Layout (documented in docs/schema-v1.md):

    /                 attrs: schema, schema_version, units (JSON), sources (JSON), alignment (JSON or ""),
                             target_level, n_frames, n_atoms, preprocessing (JSON), tea_align_version
    /frames/atom_offset  (F+1,) int64   atoms of frame i are [atom_offset[i], atom_offset[i+1])
    /frames/energy       (F,)   float64 eV, aligned to target_level (raw when not aligned)
    /frames/energy_raw   (F,)   float64 eV, as read from the source
    /frames/cell         (F,3,3) float64 Angstrom, rows = lattice vectors
    /frames/pbc          (F,3)  bool
    /frames/stress       (F,3,3) float64 eV/A^3, ASE sign (tensile positive); NaN when has_stress is False
    /frames/has_forces, has_stress (F,) bool
    /frames/source_id    (F,)   int32   index into the ``sources`` attribute
    /frames/index        (F,)   int64   ordinal of the frame in its source file
    /frames/key          (F,)   str     identifier of the frame in its source (mp-id/frame-id, molecule/conf)
    /atoms/numbers       (A,)   uint8
    /atoms/positions     (A,3)  float64 Angstrom
    /atoms/forces        (A,3)  float64 eV/A (aligned); NaN when has_forces is False
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from . import __version__
from .alignment import Alignment
from .errors import TeaAlignError
from .files import AtomicFile, check_output_path, interrupts_deferred, write_text_atomic  # noqa: F401  (public home: tea_align.files)
from .frame import Frame, FrameBatch, SourceInfo
from .units import SCHEMA_UNITS

SCHEMA = "tea-align/aligned-dataset"
SCHEMA_VERSION = 1
_FRAME_FIELDS = (
    "energy",
    "energy_raw",
    "cell",
    "pbc",
    "stress",
    "has_forces",
    "has_stress",
    "source_id",
    "index",
    "key",
)
_ATOM_FIELDS = ("numbers", "positions", "forces")


def _version() -> str:
    return __version__


class DatasetWriter:
    """Write FrameBatches into a schema-v1 file atomically: the file appears only after ``close()``.

    Use as a context manager; on an exception the partial file is deleted. ``compression`` is an
    h5py filter name ("gzip", "lzf" or None); datasets are chunked by ``chunk_frames`` frames.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        alignment_json: str = "",
        target_level: str = "",
        preprocessing: dict | None = None,
        compression: str | None = "gzip",
        compression_opts: int | None = 1,
        chunk_frames: int = 8192,
    ):
        import h5py  # lazy: HDF5 only for .h5 files

        self.path = Path(path)
        self._af = AtomicFile(self.path)
        try:  # an interrupt (Ctrl-C) while the file is being set up must not leave the temporary behind
            self._open(
                h5py,
                alignment_json,
                target_level,
                preprocessing,
                compression,
                compression_opts,
                chunk_frames,
            )
        except BaseException:
            self.abort()
            raise

    def _open(
        self,
        h5py,
        alignment_json,
        target_level,
        preprocessing,
        compression,
        compression_opts,
        chunk_frames,
    ):
        self._h5 = h5py.File(self._af.tmp, "w")
        self._sources: list[SourceInfo] = []
        self._n_frames = 0
        self._n_atoms = 0
        self.preprocessing = dict(preprocessing or {})
        comp = {"compression": compression}
        if compression == "gzip":
            comp.update(compression_opts=compression_opts, shuffle=True)
        a = self._h5.attrs
        a["schema"] = SCHEMA
        a["schema_version"] = SCHEMA_VERSION
        a["units"] = json.dumps(SCHEMA_UNITS)
        a["alignment"] = alignment_json
        a["target_level"] = target_level
        a["tea_align_version"] = _version()
        fr, at = self._h5.create_group("frames"), self._h5.create_group("atoms")
        cf, ca = chunk_frames, chunk_frames * 32
        str_dt = h5py.string_dtype()
        self._d = {
            "atom_offset": fr.create_dataset(
                "atom_offset", data=np.zeros(1, np.int64), maxshape=(None,), chunks=(cf,), **comp
            ),
            "energy": fr.create_dataset(
                "energy", (0,), np.float64, maxshape=(None,), chunks=(cf,), **comp
            ),
            "energy_raw": fr.create_dataset(
                "energy_raw", (0,), np.float64, maxshape=(None,), chunks=(cf,), **comp
            ),
            "cell": fr.create_dataset(
                "cell", (0, 3, 3), np.float64, maxshape=(None, 3, 3), chunks=(cf, 3, 3), **comp
            ),
            "pbc": fr.create_dataset(
                "pbc", (0, 3), bool, maxshape=(None, 3), chunks=(cf, 3), **comp
            ),
            "stress": fr.create_dataset(
                "stress", (0, 3, 3), np.float64, maxshape=(None, 3, 3), chunks=(cf, 3, 3), **comp
            ),
            "has_forces": fr.create_dataset(
                "has_forces", (0,), bool, maxshape=(None,), chunks=(cf,), **comp
            ),
            "has_stress": fr.create_dataset(
                "has_stress", (0,), bool, maxshape=(None,), chunks=(cf,), **comp
            ),
            "source_id": fr.create_dataset(
                "source_id", (0,), np.int32, maxshape=(None,), chunks=(cf,), **comp
            ),
            "index": fr.create_dataset(
                "index", (0,), np.int64, maxshape=(None,), chunks=(cf,), **comp
            ),
            "key": fr.create_dataset("key", (0,), str_dt, maxshape=(None,), chunks=(cf,), **comp),
            "numbers": at.create_dataset(
                "numbers", (0,), np.uint8, maxshape=(None,), chunks=(ca,), **comp
            ),
            "positions": at.create_dataset(
                "positions", (0, 3), np.float64, maxshape=(None, 3), chunks=(ca, 3), **comp
            ),
            "forces": at.create_dataset(
                "forces", (0, 3), np.float64, maxshape=(None, 3), chunks=(ca, 3), **comp
            ),
        }

    def _source_ids(self, batch: FrameBatch) -> np.ndarray:
        lut = np.empty(len(batch.sources), dtype=np.int32)
        for i, s in enumerate(batch.sources):
            if s not in self._sources:
                self._sources.append(s)
            lut[i] = self._sources.index(s)
        return lut[batch.source_id] if batch.n_frames else np.zeros(0, np.int32)

    @staticmethod
    def _append(ds, arr: np.ndarray) -> None:
        n0 = ds.shape[0]
        ds.resize(n0 + arr.shape[0], axis=0)
        ds[n0:] = arr

    def _check_space(self, batch: FrameBatch) -> None:
        """OSError(ENOSPC) before a batch that would not fit: HDF5 cannot recover from a failed write (the process
        crashes when the file is closed), so the space is checked first. Counted: every new chunk the batch opens, at
        its full uncompressed size (an upper bound: compressed chunks are smaller), the keys' heap, 1 MiB of metadata."""
        add_frames, add_atoms = batch.n_frames, int(batch.offsets[-1])
        need = (1 << 20) + sum(len(str(k)) + 16 for k in batch.key)
        for name, ds in self._d.items():
            add = add_atoms if name in ("numbers", "positions", "forces") else add_frames
            n0, c = ds.shape[0], ds.chunks[0]
            new_chunks = -(-(n0 + add) // c) - (-(-n0 // c))
            need += new_chunks * int(np.prod(ds.chunks)) * max(ds.dtype.itemsize, 1)
        st = os.statvfs(self._af.tmp.parent)
        free = st.f_bavail * st.f_frsize
        if free < need:
            raise OSError(
                errno.ENOSPC,
                f"no space left for the next frames: {need / 1e6:.1f} MB needed, {free / 1e6:.1f} MB free "
                f"(the partial output file is removed)",
                str(self.path),
            )

    def append(self, batch: FrameBatch) -> None:
        """Append a batch (frames already validated, aligned and filtered by the caller)."""
        if batch.n_frames == 0:
            return
        self._check_space(batch)
        d = self._d
        self._append(d["atom_offset"], batch.offsets[1:] + self._n_atoms)
        for name in _FRAME_FIELDS:
            arr = self._source_ids(batch) if name == "source_id" else getattr(batch, name)
            if name == "key":
                arr = np.asarray([str(k) for k in arr], dtype=object)
            self._append(d[name], arr)
        self._append(d["numbers"], batch.numbers.astype(np.uint8))
        self._append(d["positions"], batch.positions)
        self._append(d["forces"], batch.forces)
        self._n_frames += batch.n_frames
        self._n_atoms += int(batch.offsets[-1])

    def close(self) -> Path:
        """Finish the file and move it into place; an empty dataset is an error (nothing is left)."""
        try:
            if self._n_frames == 0:
                raise TeaAlignError(
                    "no frames left to write (empty dataset after filtering?)", path=self.path
                )
            a = self._h5.attrs
            a["sources"] = json.dumps([asdict(s) for s in self._sources])
            a["n_frames"] = self._n_frames
            a["n_atoms"] = self._n_atoms
            a["preprocessing"] = json.dumps(self.preprocessing)
            self._h5.close()
            return self._af.commit()
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the partial file (emptied first: HDF5's final flush then has room even on a full disk); Ctrl-C waits
        until it is gone."""
        with interrupts_deferred():
            try:
                os.truncate(self._af.tmp, 0)
            except OSError:
                pass
            try:
                if hasattr(self, "_h5"):
                    self._h5.close()
            except Exception:  # noqa: BLE001 - the file is being discarded; its flush may fail
                pass
            finally:
                self._af.discard()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class AlignedDataset:
    """A schema-v1 file opened for reading; iterating yields typed ``Frame``s, streaming.

    ``batches(size)`` yields FrameBatches (the fast path); ``len()`` is the number of frames;
    ``alignment`` is the embedded Alignment (or None for an unaligned ingest); ``sources`` the
    provenance table. Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | Path):
        import h5py  # lazy: HDF5 only for .h5 files

        self.path = Path(path)
        try:
            self._h5 = h5py.File(self.path, "r")
        except (OSError, FileNotFoundError) as exc:
            raise TeaAlignError(f"not a readable HDF5 file ({exc})", path=self.path) from exc
        a = self._h5.attrs
        try:
            if a.get("schema") != SCHEMA:
                raise TeaAlignError(
                    f"not an aligned dataset (schema attribute {a.get('schema')!r}, expected {SCHEMA!r})",
                    path=self.path,
                )
            version = int(a["schema_version"])
            if version != SCHEMA_VERSION:
                raise TeaAlignError(
                    f"schema version {version} is not supported (this tea-align reads version {SCHEMA_VERSION})",
                    path=self.path,
                )
            units = json.loads(a["units"])
            if units != SCHEMA_UNITS:
                raise TeaAlignError(
                    f"units {units} do not match schema units {SCHEMA_UNITS}", path=self.path
                )
            if "n_frames" not in a:
                raise TeaAlignError(
                    "file was not closed by its writer (no n_frames): incomplete dataset",
                    path=self.path,
                )
            self.sources = [SourceInfo(**s) for s in json.loads(a["sources"])]
            self.n_frames = int(a["n_frames"])
            self.n_atoms = int(a["n_atoms"])
            self.target_level = str(a["target_level"])
            self.preprocessing = json.loads(a["preprocessing"])
            self.alignment_json = str(a["alignment"])
            for name in ("atom_offset", *_FRAME_FIELDS):
                if f"frames/{name}" not in self._h5:
                    raise TeaAlignError(f"missing dataset frames/{name}", path=self.path)
            for name in _ATOM_FIELDS:
                if f"atoms/{name}" not in self._h5:
                    raise TeaAlignError(f"missing dataset atoms/{name}", path=self.path)
            if (
                self._h5["frames/energy"].shape[0] != self.n_frames
                or self._h5["atoms/numbers"].shape[0] != self.n_atoms
            ):
                raise TeaAlignError(
                    "array lengths do not match n_frames/n_atoms: corrupt dataset", path=self.path
                )
        except TeaAlignError:
            self._h5.close()
            raise
        except (KeyError, ValueError) as exc:
            self._h5.close()
            raise TeaAlignError(f"malformed header ({exc})", path=self.path) from exc

    @property
    def alignment(self):
        """The embedded Alignment, or None when the file holds unaligned (ingested) frames."""
        if not self.alignment_json:
            return None
        return Alignment.from_json(self.alignment_json)

    def __len__(self) -> int:
        return self.n_frames

    def batches(
        self, size: int = 8192, start: int = 0, stop: int | None = None
    ) -> Iterator[FrameBatch]:
        """Stream frames [start, stop) as FrameBatches of at most ``size`` frames."""
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        fr, at = self._h5["frames"], self._h5["atoms"]
        for i0 in range(start, stop, size):
            i1 = min(i0 + size, stop)
            try:
                off = fr["atom_offset"][i0 : i1 + 1]
                a0, a1 = int(off[0]), int(off[-1])
                cols = {name: fr[name][i0:i1] for name in _FRAME_FIELDS}
                cols["key"] = np.asarray(
                    [k.decode() if isinstance(k, bytes) else k for k in cols["key"]], dtype=object
                )
                atoms = {name: at[name][a0:a1] for name in _ATOM_FIELDS}
            except (OSError, KeyError) as exc:
                raise TeaAlignError(
                    f"cannot read frames {i0}..{i1 - 1}: {exc}", path=self.path, frame=i0
                ) from exc
            yield FrameBatch(
                numbers=atoms["numbers"].astype(np.int64),
                positions=atoms["positions"],
                forces=atoms["forces"],
                offsets=off - a0,
                sources=self.sources,
                **cols,
            )

    def __iter__(self) -> Iterator[Frame]:
        for b in self.batches(1024):
            yield from b

    def __getitem__(self, i: int) -> Frame:
        if not -self.n_frames <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range for {self.n_frames} frames")
        i %= self.n_frames
        return next(self.batches(1, i, i + 1)).frame(0)

    def close(self) -> None:
        self._h5.close()

    def __enter__(self) -> AlignedDataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_dataset(path: str | Path) -> AlignedDataset:
    """Open an aligned-dataset file (schema v1) for streaming reads of typed Frames."""
    return AlignedDataset(path)
