"""The label store: a run's finished stages packed, restored byte for byte, checked; stages are never overwritten."""

from __future__ import annotations

import json
import lzma

import ase.io
import numpy as np
import pytest
from allegro_fm_bench.cli import main
from allegro_fm_bench.mini import labelstore
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator


def _stage(path, seed):
    """A labelled stage file as minidata writes it (extxyz with energy and forces)."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(3):
        a = molecule("H2O")
        a.rattle(0.05, seed=int(rng.integers(1 << 30)))
        a.calc = SinglePointCalculator(
            a, energy=float(rng.normal()), forces=rng.normal(size=(3, 3))
        )
        frames.append(a)
    path.parent.mkdir(parents=True, exist_ok=True)
    ase.io.write(path, frames, format="extxyz")


@pytest.fixture
def run(tmp_path):
    r = tmp_path / "run"
    _stage(r / "data/pbe/quartz.extxyz", 0)
    _stage(r / "data/molecular/clusters.part00.extxyz", 1)
    _stage(r / "neb-reference/band.extxyz", 2)
    (r / "data/molecular/clusters.part01.lock").write_text(
        "123\n"
    )  # a stage being made elsewhere: not a result
    (r / "data/pbe/.quartz.extxyz.99.abc.partial.extxyz").write_text(
        "half"
    )  # a killed writer's temporary
    _stage(r / "data/pbe.extxyz", 3)  # an assembled file (derived from the stages): not stored
    return r


def test_pack_restore_round_trip_is_byte_identical(run, tmp_path):
    store = tmp_path / "store"
    status = labelstore.pack(run, store)
    assert status == {
        "data/molecular/clusters.part00.extxyz": "added",
        "data/pbe/quartz.extxyz": "added",
        "neb-reference/band.extxyz": "added",
    }
    manifest = json.loads((store / "MANIFEST.json").read_text())["files"]
    assert manifest["neb-reference/band.extxyz"]["checkpoint"] is True
    assert manifest["data/pbe/quartz.extxyz"]["checkpoint"] is False
    assert labelstore.pack(run, store) == dict.fromkeys(
        status, "same"
    )  # packing again changes nothing

    fresh = tmp_path / "fresh"
    assert set(labelstore.restore(store, fresh).values()) == {"restored"}
    for rel in status:
        assert (fresh / rel).read_bytes() == (run / rel).read_bytes()
    frames = ase.io.read(fresh / "data/pbe/quartz.extxyz", ":")
    assert len(frames) == 3 and np.allclose(
        frames[1].get_forces(), ase.io.read(run / "data/pbe/quartz.extxyz", 1).get_forces()
    )
    assert set(labelstore.check(store, fresh).values()) == {"same"}


def test_a_differing_stage_is_refused_and_nothing_overwritten(run, tmp_path):
    store = tmp_path / "store"
    labelstore.pack(run, store)
    before = (store / "data/pbe/quartz.extxyz.xz").read_bytes()
    manifest = (store / "MANIFEST.json").read_text()
    _stage(run / "data/pbe/quartz.extxyz", 7)  # a remake that labelled quartz differently
    _stage(run / "data/pbe/lime.extxyz", 8)
    with pytest.raises(ValueError, match=r"1 finished stage\(s\) differ.*data/pbe/quartz.extxyz"):
        labelstore.pack(run, store)
    assert (store / "data/pbe/quartz.extxyz.xz").read_bytes() == before
    assert (
        store / "MANIFEST.json"
    ).read_text() == manifest  # lime not added either: all or nothing
    status = labelstore.check(store, run)
    assert (
        status["data/pbe/quartz.extxyz"] == "differs"
        and status["data/pbe/lime.extxyz"] == "not in store"
    )
    assert main(["labels", "check", str(store), str(run), "-q"]) == 1
    # restore keeps the run's own (differing) stage and says so
    assert labelstore.restore(store, run)["data/pbe/quartz.extxyz"] == "differs"
    assert (
        b"quartz" not in before
        and lzma.decompress(before) != (run / "data/pbe/quartz.extxyz").read_bytes()
    )


def test_a_checkpoint_is_updated_and_a_corrupt_store_file_named(run, tmp_path):
    store = tmp_path / "store"
    labelstore.pack(run, store)
    _stage(run / "neb-reference/band.extxyz", 9)  # the NEB went on: its checkpoint changed
    assert labelstore.pack(run, store)["neb-reference/band.extxyz"] == "updated"
    assert (
        lzma.decompress((store / "neb-reference/band.extxyz.xz").read_bytes())
        == (run / "neb-reference/band.extxyz").read_bytes()
    )

    bad = store / "data/pbe/quartz.extxyz.xz"
    bad.write_bytes(lzma.compress(b"not the stage"))
    with pytest.raises(ValueError, match="quartz.extxyz.xz: its content does not match"):
        labelstore.restore(store, tmp_path / "fresh")
    with pytest.raises(ValueError, match="no MANIFEST.json"):
        labelstore.restore(tmp_path / "nothing", tmp_path / "fresh")
    with pytest.raises(ValueError, match="no such run folder"):
        labelstore.pack(tmp_path / "missing", store)
