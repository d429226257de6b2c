"""Progress output: a tqdm bar on a terminal, plain lines (no carriage-return redraws) in a log file."""

from __future__ import annotations

import io

from tea_align.progress import Progress, progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_a_line_every_ten_percent_and_no_redraws():
    log = io.StringIO()
    with Progress(400, desc="md", unit="step", file=log) as p:
        for _ in range(400):
            p.update(1)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 11  # 0 %, 10 %, ..., 100 %
    assert lines[-1].startswith("md: 400/400 step (100 %)")


def test_a_terminal_gets_a_redrawn_bar():
    tty = _Terminal()
    for _ in progress(range(50), desc="x", file=tty):
        pass
    assert "\r" in tty.getvalue()


def test_disabled_and_tqdm_disable_are_silent(monkeypatch):
    log = io.StringIO()
    for _ in progress(range(20), file=log, enabled=False):
        pass
    monkeypatch.setenv("TQDM_DISABLE", "1")
    for _ in progress(range(20), file=_Terminal()):
        pass
    for _ in progress(range(20), file=log):
        pass
    assert log.getvalue() == ""


def test_unknown_total_prints_by_time_and_postfix_is_shown():
    log = io.StringIO()
    p = Progress(None, desc="frames", file=log, interval=0.0)
    p.set_postfix(val="0.1")
    p.update(3)
    p.close()
    assert "frames: 3 it" in log.getvalue() and "val=0.1" in log.getvalue()
