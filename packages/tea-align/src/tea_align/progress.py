"""Progress output that suits both a terminal and a log file: the one progress helper of every Allegro-FM package.

On a terminal: a tqdm bar (redrawn in place). Anywhere else (a batch job's log, a pipe, a test's captured stream): no
carriage-return redraws, only a plain line at every ``every_percent`` of the total (or every ``interval`` seconds when
the total is unknown), so a log file holds a few readable lines instead of hundreds of redraws. It lives in tea-align,
the package every other one depends on, because it needs nothing but the standard library (tqdm when installed).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from .commandline import raise_if_interrupted


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or foreign stream: not a terminal
        return False


class Progress:
    """A progress report over ``total`` items (see the module docstring). Use as a context manager or call ``close``.

    ``enabled`` False (or the environment variable ``TQDM_DISABLE`` set to 1/true, tqdm's own switch): silent.
    ``file``: the stream (default stderr, looked up when created so a test's capture applies).
    ``delay`` (s): nothing is shown until the work has lasted this long (both modes)."""

    def __init__(
        self,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        *,
        enabled: bool = True,
        file: IO[str] | None = None,
        every_percent: float = 10.0,
        interval: float = 30.0,
        delay: float = 0.0,
        leave: bool = True,
        initial: int = 0,
    ):
        enabled = enabled and os.environ.get("TQDM_DISABLE", "").lower() not in ("1", "true", "yes")
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.file = file if file is not None else sys.stderr
        self.n = initial
        self.every, self.interval, self.delay = every_percent, interval, delay
        self.t0 = time.perf_counter()
        self._last_t, self._last_step = self.t0, -1
        self.postfix = ""
        self.bar = None
        self.tty = _is_tty(self.file)
        if enabled and self.tty:
            try:
                from tqdm.auto import tqdm  # lazy: optional; a terminal bar

                self.bar = tqdm(
                    total=total,
                    desc=desc,
                    unit=unit,
                    file=self.file,
                    delay=delay,
                    leave=leave,
                    initial=initial,
                )
            except ImportError:  # tqdm is optional: plain lines on a terminal too
                pass

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` items; a safe point where an interrupt that a signal handler could not deliver is raised."""
        raise_if_interrupted()
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled:
            self._maybe_line()

    def set_postfix(self, **kw: Any) -> None:
        """Extra ``key=value`` text shown after the count (a bar's postfix; appended to plain lines)."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in kw.items())
        if self.bar is not None:
            self.bar.set_postfix(**kw)

    def _line(self) -> str:
        el = time.perf_counter() - self.t0
        rate = self.n / el if el > 0 else 0.0
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100.0 * self.n / self.total:.0f} %)" if self.total else ""
        extra = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc + ': ' if self.desc else ''}{self.n}{of} {self.unit}{pct}, {el:.0f} s, {rate:.3g} {self.unit}/s{extra}"

    def _maybe_line(self) -> None:
        now = time.perf_counter()
        if now - self.t0 < self.delay:
            return
        if self.total:
            step = int(100.0 * self.n / self.total // self.every)
            due = step > self._last_step
            if due:
                self._last_step = step
        else:
            due = now - self._last_t >= self.interval
        if due:
            self._last_t = now
            print(self._line(), file=self.file, flush=True)

    def close(self) -> None:
        """End the report (a bar is closed; a plain report prints its final line if it printed any, or if complete)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif (
            self.enabled
            and self.total
            and self.n >= self.total
            and self._last_step < int(100 // self.every)
        ):
            if time.perf_counter() - self.t0 >= self.delay:
                print(self._line(), file=self.file, flush=True)
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(
    iterable: Iterable, total: int | None = None, desc: str = "", unit: str = "it", **kw: Any
) -> Iterator:
    """Iterate over ``iterable`` with a ``Progress`` report (``total`` defaults to ``len(iterable)`` when it has one)."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, desc, unit, **kw) as p:
        for x in iterable:
            yield x
            p.update(1)
