"""MPtrj JSON (Deng et al. 2023): ``{mp_id: {frame_id: {structure, uncorrected_total_energy, force, stress}}}``.

The file is ~11 GB, so it is streamed: a small cursor walks the two outer object levels and
``json.JSONDecoder.raw_decode`` parses one frame object at a time (hand-written because the only
streaming JSON parsers on PyPI would add a dependency; raw_decode does the actual parsing).
Units: energy eV (total, MP2020 corrections not applied), force eV/A, stress kBar with VASP's sign
(pressure positive), converted here to eV/A^3 with tensile positive.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from ase.stress import voigt_6_to_full_3x3_stress

from ..elements import symbol_to_z
from ..errors import TeaAlignError
from ..frame import Frame
from ..units import KBAR_TO_EV_PER_ANGSTROM3, VASP_STRESS_SIGN

DEFAULT_LEVEL = "PBE(+U)/PAW (VASP, MPtrj)"
_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()
#: A frame object larger than this is treated as malformed JSON instead of buffering the whole file.
_MAX_VALUE_CHARS = 64 << 20


class _Cursor:
    """Incremental reader over a text stream: whitespace, punctuation and raw_decode of values."""

    def __init__(self, fh, path: Path, chunk: int = 1 << 20):
        self.fh, self.path, self.chunk = fh, path, chunk
        self.buf, self.pos, self.base, self.eof = "", 0, 0, False

    def _fill(self, need_more: bool = False) -> bool:
        data = self.fh.read(self.chunk * (4 if need_more else 1))
        if not data:
            self.eof = True
            return False
        self.base += self.pos
        self.buf = self.buf[self.pos :] + data
        self.pos = 0
        return True

    def peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._fill():
                return ""

    def expect(self, chars: str, what: str) -> str:
        c = self.peek()
        if c == "" or c not in chars:
            found = "end of file" if c == "" else repr(c)
            raise TeaAlignError(
                f"truncated or malformed JSON at byte ~{self.base + self.pos}: expected {what}, found {found}",
                path=self.path,
            )
        self.pos += 1
        return c

    def value(self):
        self.peek()
        while True:
            try:
                obj, end = _DECODER.raw_decode(self.buf, self.pos)
                # a number at the very end of the buffer may continue in the next chunk
                if end < len(self.buf) or self.eof or not isinstance(obj, (int, float)):
                    self.pos = end
                    return obj
            except json.JSONDecodeError as exc:
                if self.eof or len(self.buf) - self.pos > _MAX_VALUE_CHARS:
                    raise TeaAlignError(
                        f"truncated or malformed JSON at byte ~{self.base + exc.pos}: {exc.msg}",
                        path=self.path,
                    ) from None
            self._fill(need_more=True)


def _iter_items(cur: _Cursor) -> Iterator[str]:
    """Yield keys of the object starting at the cursor; the caller consumes each value."""
    cur.expect("{", "'{'")
    if cur.peek() == "}":
        cur.pos += 1
        return
    while True:
        key = cur.value()
        if not isinstance(key, str):
            raise TeaAlignError(
                f"malformed JSON at byte ~{cur.base + cur.pos}: object key is not a string",
                path=cur.path,
            )
        cur.expect(":", "':'")
        yield key
        if cur.expect(",}", "',' or '}'") == "}":
            return


def read_mptrj(
    path: str | Path, *, source: str, level_of_theory: str = DEFAULT_LEVEL
) -> Iterator[Frame]:
    """Stream MPtrj frames (bounded memory: one frame object is decoded at a time)."""
    path = Path(path)
    try:
        yield from _read_mptrj(path, source, level_of_theory)
    except UnicodeDecodeError as exc:
        raise TeaAlignError(
            f"not UTF-8 text ({exc.reason}): MPtrj files are UTF-8 JSON", path=path
        ) from None


def _read_mptrj(path: Path, source: str, level_of_theory: str) -> Iterator[Frame]:
    i = 0
    with open(path, encoding="utf-8") as fh:
        cur = _Cursor(fh, path)
        for mp_id in _iter_items(cur):
            for frame_id in _iter_items(cur):
                d = cur.value()
                key = f"{mp_id}/{frame_id}"
                try:
                    yield _to_frame(d, source, level_of_theory, key, i)
                except TeaAlignError:
                    raise
                except (KeyError, TypeError, ValueError, IndexError) as exc:
                    msg = f"missing key {exc}" if isinstance(exc, KeyError) else str(exc)
                    raise TeaAlignError(msg, path=path, frame=i, key=key) from exc
                i += 1
        if cur.peek() != "":
            raise TeaAlignError(
                f"malformed JSON: trailing data at byte ~{cur.base + cur.pos}", path=path
            )
    if i == 0:
        raise TeaAlignError("no frames in file (empty dataset)", path=path)


def _to_frame(d: dict, source: str, level: str, key: str, i: int) -> Frame:
    energy = d["uncorrected_total_energy"]  # first: a frame without its energy is named as such
    if energy is None:
        raise ValueError("'uncorrected_total_energy' is null")
    s = d["structure"]
    lattice = s["lattice"]
    cell = np.asarray(lattice["matrix"], dtype=np.float64)
    sites = s["sites"]
    numbers = np.empty(len(sites), dtype=np.int64)
    for k, site in enumerate(sites):
        species = site["species"]
        if len(species) != 1 or float(species[0].get("occu", 1.0)) != 1.0:
            raise ValueError(
                f"site {k} is disordered ({species}); tea-align needs ordered structures"
            )
        numbers[k] = symbol_to_z(species[0]["element"])
    if sites and "xyz" in sites[0]:
        positions = np.array([site["xyz"] for site in sites], dtype=np.float64)
    else:
        positions = np.array([site["abc"] for site in sites], dtype=np.float64) @ cell
    forces = np.asarray(d["force"], dtype=np.float64)
    if forces.shape != (len(sites), 3):
        raise ValueError(f"'force' has shape {forces.shape} for {len(sites)} sites")
    stress = d.get("stress")
    if stress is not None:
        stress = np.asarray(stress, dtype=np.float64)
        if stress.size == 6:  # Voigt order xx yy zz yz xz xy
            stress = voigt_6_to_full_3x3_stress(stress.ravel())
        elif stress.size != 9:
            raise ValueError(
                f"'stress' has {stress.size} components; expected 9 (3x3) or 6 (Voigt xx yy zz yz xz xy), in kBar"
            )
        stress = VASP_STRESS_SIGN * KBAR_TO_EV_PER_ANGSTROM3 * stress.reshape(3, 3)
    return Frame(
        numbers=numbers,
        positions=positions,
        cell=cell,
        pbc=lattice.get("pbc", (True, True, True)),
        energy=float(energy),
        forces=forces,
        stress=stress,
        source=source,
        level_of_theory=level,
        key=key,
        index=i,
    )
