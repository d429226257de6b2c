"""Atomic output files, shared by the four packages: readers never see a half-written file, and a failed or
interrupted write leaves the previous file (if any) in place and no temporary behind.

- ``AtomicFile(target)``: a temporary path next to ``target``; ``commit()`` renames it into place, ``discard()`` removes it
- ``write_text_atomic(path, text)``, ``write_bytes_atomic(path, data)``: whole-file writes (fsync before the rename)
- ``check_output_path(out, inputs)``: refuse an output that is one of the inputs
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import TeaAlignError


class AtomicFile:
    """A temporary path next to ``target`` that becomes ``target`` only on ``commit()`` (os.replace)."""

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.target.name}.", suffix=".partial", dir=self.target.parent)
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> Path:
        os.replace(self.tmp, self.target)
        return self.target

    def discard(self) -> None:
        self.tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (readers never see a half-written file)."""
    af = AtomicFile(path)
    try:
        af.tmp.write_text(text)
        return af.commit()
    except BaseException:
        af.discard()
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, flushed to disk before the rename."""
    af = AtomicFile(path)
    try:
        with open(af.tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        return af.commit()
    except BaseException:
        af.discard()
        raise


def check_output_path(out: str | Path, inputs: list[str | Path]) -> Path:
    """Refuse an output path that is one of the inputs (it would be destroyed); return it as a Path."""
    out = Path(out)
    for p in inputs:
        p = Path(p)
        if out.resolve() == p.resolve() or (out.exists() and p.exists() and os.path.samefile(out, p)):
            raise TeaAlignError("output path is also an input; choose another output file", path=out)
    return out
