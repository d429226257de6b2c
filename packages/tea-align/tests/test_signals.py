"""Ctrl-C and SIGTERM stop a long tea-align command within a second or two, with one line, exit 130 / 143, no output
file and no temporary left. Before, an interrupt that landed in one of h5py's weakref callbacks was swallowed by Python
("Exception ignored in ...") and the command ran to its end with exit 0 (3 of 3 trials here), and SIGTERM killed the
process with its partial file left behind."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tea_align
from tea_align.frame import FrameBatch, SourceInfo


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> Path:
    """A schema-v1 file of 150 000 small frames (a few seconds to convert on 2 cores)."""
    from tea_align.dataset import DatasetWriter

    path = tmp_path_factory.mktemp("sig") / "raw.h5"
    rng = np.random.default_rng(0)
    src = [SourceInfo("gen", "generated", "test", "L")]
    f, per = 10000, 8
    off = np.arange(f + 1, dtype=np.int64) * per
    with DatasetWriter(path) as w:
        for b in range(15):
            e = -rng.random(f) * 10
            w.append(
                FrameBatch(
                    numbers=rng.choice([1, 6, 8], f * per),
                    positions=rng.random((f * per, 3)) * 5,
                    forces=rng.normal(size=(f * per, 3)),
                    offsets=off,
                    cell=np.tile(np.eye(3) * 8, (f, 1, 1)),
                    pbc=np.ones((f, 3), bool),
                    energy=e,
                    energy_raw=e,
                    stress=np.full((f, 3, 3), np.nan),
                    has_forces=np.ones(f, bool),
                    has_stress=np.zeros(f, bool),
                    source_id=np.zeros(f, np.int32),
                    index=np.arange(b * f, (b + 1) * f),
                    key=np.array([""] * f, object),
                    sources=src,
                )
            )
    return path


@pytest.mark.parametrize(
    "sig, code", [(signal.SIGINT, 130), (signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_a_signal_stops_a_conversion_cleanly(big, tmp_path, sig, code):
    out = tmp_path / "out.h5"
    p = subprocess.Popen(
        [sys.executable, "-m", "tea_align.cli", "convert", f"{big},format=tea", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.time()
    while not list(tmp_path.glob(".out.h5.*partial*")):  # the conversion is writing
        assert p.poll() is None and time.time() - t0 < 60, p.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    p.send_signal(sig)
    t = time.time()
    _, err = p.communicate(timeout=30)
    assert p.returncode == code, err
    assert time.time() - t < 5
    assert [
        line for line in err.splitlines() if line.strip() and not line.startswith("convert:")
    ] == [
        "tea-align: interrupted"
        if sig == signal.SIGINT
        else "tea-align: terminated (SIGTERM); partial outputs removed"
    ], err
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with tea_align.open_dataset(big) as ds:
        assert len(ds) == 150000
