"""Atomic output files, shared by the four packages: readers never see a half-written file, and a failed or
interrupted write leaves the previous file (if any) in place and no temporary behind.

- ``AtomicFile(target)``: a temporary path next to ``target``; ``commit()`` renames it into place, ``discard()`` removes it
- ``atomic_path(target)``: a context manager giving a temporary path that becomes ``target`` when the block ends
  without an error (for writers that take a path: ase.io.write, matplotlib's savefig, torch.save)
- ``write_text_atomic(path, text)``, ``write_bytes_atomic(path, data)``: whole-file writes (fsync before the rename)
- ``check_output_path(out, inputs)``: refuse an output that is one of the inputs
"""

from __future__ import annotations

import glob
import os
import signal
import tempfile
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import TeaAlignError


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_stale_temporaries(target: Path) -> None:
    """Delete ``.NAME.PID.*.partial*`` temporaries of ``target`` left by processes that no longer run (this host)."""
    for p in target.parent.glob(f".{glob.escape(target.name)}.*.partial*"):
        pid = p.name[len(target.name) + 2 :].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            p.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) and SIGTERM for the block and deliver them after it (the handler that was installed
    runs then: KeyboardInterrupt by default): for steps that must not stop half way (a temporary created but not yet
    named, a clean-up). Only the main thread receives signals; elsewhere, and for a signal that is ignored or left to
    the system's default, this is a no-op. Written here: the standard library has no deferred-interrupt helper."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if callable(handler):
            old[sig] = signal.signal(sig, lambda *a: got.append(a))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if got:
            old[got[0][0]](*got[0])


class AtomicFile:
    """A temporary path next to ``target`` that becomes ``target`` only on ``commit()`` (os.replace)."""

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.target.parent.mkdir(parents=True, exist_ok=True)
        # ends in the target's own suffix (".partial.png"), so writers that infer the format from the name work
        _remove_stale_temporaries(self.target)
        # named after the writing process: a temporary whose writer was killed (kill -9) is removed by the next write
        # Ctrl-C is deferred until the temporary has its name here (else it would be left behind unnamed); an interrupt
        # that arrived meanwhile is raised at the block's end, inside the try, which removes the temporary
        self.tmp: Path | None = None
        try:
            with interrupts_deferred():
                fd, tmp = tempfile.mkstemp(
                    prefix=f".{self.target.name}.{os.getpid()}.",
                    suffix=".partial" + self.target.suffix,
                    dir=self.target.parent,
                )
                self.tmp = Path(tmp)
                os.close(fd)
            # mkstemp makes 0600: give the file the mode a plain open() would (the target's own, or 0666 less the umask)
            os.chmod(
                self.tmp,
                self.target.stat().st_mode & 0o7777 if self.target.exists() else 0o666 & ~_umask(),
            )
        except BaseException:
            if self.tmp is not None:
                self.discard()
            raise

    def commit(self) -> Path:
        os.replace(self.tmp, self.target)
        return self.target

    def discard(self) -> None:
        with interrupts_deferred():  # a second Ctrl-C must not stop the clean-up half way
            self.tmp.unlink(missing_ok=True)


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """``with atomic_path(out) as tmp: write(tmp)``: ``out`` appears (replaced atomically) only if the block succeeds."""
    af = AtomicFile(target)
    try:
        yield af.tmp
    except BaseException:
        af.discard()
        raise
    af.commit()


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


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig`` (a pyplot figure), write it to ``path`` atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt  # lazy: matplotlib only when plotting

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return Path(path)


def read_toml(path: str | Path, what: str) -> tuple[dict, str]:
    """A TOML file's tables and its text; ValueError naming ``path`` and saying it is not a ``what`` (e.g. "run file")
    when it cannot be read, is not UTF-8 text, or is not TOML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), text
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not a {what}: TOML is UTF-8 text, this file is not ({exc.reason} at byte {exc.start})"
        ) from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: cannot read {what} ({exc})") from exc


def check_output_path(out: str | Path, inputs: list[str | Path]) -> Path:
    """Refuse an output path that is one of the inputs (it would be destroyed); return it as a Path."""
    out = Path(out)
    for p in inputs:
        p = Path(p)
        if out.resolve() == p.resolve() or (
            out.exists() and p.exists() and os.path.samefile(out, p)
        ):
            raise TeaAlignError(
                "output path is also an input; choose another output file", path=out
            )
    return out
