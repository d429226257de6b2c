"""Beyond one node: with ``[output] shards = true`` no rank gathers the system. Every rank builds only its own atoms of
the replicated supercell (same ids and velocities as one rank), writes its own restart and trajectory shard, and a
restart written on 4 ranks resumes on 2 and on 8 ranks with the trajectory of an unbroken run (float64 LJ, NVE and
Langevin); ``allegro-fm-md merge`` makes one H5MD of the shards that ase and MDAnalysis read."""

from __future__ import annotations

import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import ase.io
import numpy as np
import pytest
from allegro_fm_md import mpiexec_path
from allegro_fm_md.scaling import mpi_command
from ase.build import bulk
from md_testutil import argon_toml

MPIEXEC = mpiexec_path()
pytestmark = pytest.mark.skipif(
    not (MPIEXEC and find_spec("mpi4py")),
    reason="needs mpi4py and mpiexec (pip install mpi4py mpich)",
)

RUN = argon_toml(
    """integrator = "{integrator}"
dt_fs = 4.0
steps = {steps}
temperature_K = 60
seed = 5""",
    """dir = "{out}"
thermo_every = 10
trajectory_every = 20
restart_every = 20
shards = {shards}
{extra}""",
    system='structure = "ar.extxyz"\nreplicate = [4, 4, 4]',
)


def _setup(tmp: Path) -> None:
    a = bulk("Ar", "fcc", a=5.30, cubic=True)
    a.set_cell(
        a.cell @ np.array([[1, 0.05, 0], [0, 1, 0.03], [0, 0, 1]]), scale_atoms=True
    )  # triclinic unit
    ase.io.write(tmp / "ar.extxyz", a)


def _run(tmp: Path, n: int, name: str, integrator="nve", steps=40, shards=True, extra="") -> None:
    (tmp / f"{name}.toml").write_text(
        RUN.format(
            integrator=integrator, steps=steps, out=name, shards=str(shards).lower(), extra=extra
        )
    )
    cmd = mpi_command(n, "run", str(tmp / f"{name}.toml"))
    p = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]


def _final(tmp: Path, name: str):
    from allegro_fm_md.restart import read_restart_file

    path = (
        tmp
        / name
        / ("restart.shards" if (tmp / name / "restart.shards").exists() else "restart.npz")
    )
    r = read_restart_file(path)
    order = np.argsort(r.arrays["ids"])
    return (
        {k: r.arrays[k][order] for k in ("ids", "positions", "velocities")},
        r.arrays["cell"],
        r.meta["step"],
    )


def _same(a, b, cell):
    assert np.array_equal(a["ids"], b["ids"])
    d = a["positions"] - b["positions"]
    frac = d @ np.linalg.inv(cell)
    d = (frac - np.round(frac)) @ cell
    assert np.abs(d).max() < 1e-9 and np.abs(a["velocities"] - b["velocities"]).max() < 1e-9


@pytest.mark.parametrize("integrator", ["nve", "langevin"])
def test_sharded_restart_written_on_4_ranks_resumes_on_2_and_8(tmp_path, integrator):
    _setup(tmp_path)
    _run(tmp_path, 1, "unbroken", integrator, 40, shards=False)
    _run(tmp_path, 4, "four", integrator, 20)
    ref, cell, step = _final(tmp_path, "unbroken")
    assert (
        step == 40
        and sorted(p.name for p in (tmp_path / "four" / "restart.shards").iterdir())[-1]
        == "rank-00003.npz"
    )
    for n in (2, 8):
        _run(
            tmp_path, n, f"resumed{n}", integrator, 40, extra='restart_from = "four/restart.shards"'
        )
        got, _, step = _final(tmp_path, f"resumed{n}")
        assert step == 40
        _same(got, ref, cell)


def test_per_rank_setup_and_merged_trajectory_equal_one_rank(tmp_path):
    """2 ranks, each building its own atoms and writing its own shard: the merged trajectory equals the 1-rank one
    frame by frame; ase and MDAnalysis read it."""
    from allegro_fm_md.cli import main

    _setup(tmp_path)
    _run(tmp_path, 1, "one", shards=False)
    _run(tmp_path, 2, "two")
    assert (
        main(
            [
                "merge",
                str(tmp_path / "two" / "trajectory.shards"),
                "-o",
                str(tmp_path / "merged.h5md"),
            ]
        )
        == 0
    )
    from allegro_fm_md import read_frames

    ours, theirs = (
        read_frames(tmp_path / "merged.h5md"),
        read_frames(tmp_path / "one" / "trajectory.h5md"),
    )
    assert len(ours) == len(theirs) == 3 and [f.info["step"] for f in ours] == [0, 20, 40]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a.positions, b.positions, atol=1e-9)
        assert list(a.numbers) == list(b.numbers) and len(a) == 256
    mda = pytest.importorskip("MDAnalysis")
    u = mda.Universe.empty(256, trajectory=True)
    u.load_new(str(tmp_path / "merged.h5md"))
    assert len(u.trajectory) == 3
    np.testing.assert_allclose(u.trajectory[2].positions, ours[2].positions, atol=1e-4)


#: a cell 6 x 4 x 4 fcc cells: 3 ranks along x are each 10.6 A wide (> cutoff + skin)
RUN6 = RUN.replace("replicate = [4, 4, 4]", "replicate = [6, 4, 4]")


def _write6(
    tmp: Path, n: int, name: str, steps: int, extra: str = ""
) -> subprocess.CompletedProcess:
    (tmp / f"{name}.toml").write_text(
        RUN6.format(integrator="nve", steps=steps, out=name, shards="true", extra=extra)
    )
    cmd = mpi_command(n, "run", str(tmp / f"{name}.toml"))
    return subprocess.run(
        cmd, cwd=tmp, capture_output=True, text=True, timeout=60
    )  # a hang fails here: 60 s


def _resume(tmp: Path, n: int, name: str, restart: str) -> subprocess.CompletedProcess:
    return _write6(tmp, n, name, 40, f'restart_from = "{restart}"')


@pytest.mark.parametrize(
    "damage, ranks, named",
    [
        ("missing", 3, "rank-00001.npz: restart shard missing"),
        ("duplicate", 2, "rank-00001.npz: restart shard of"),  # rank 0's file copied over rank 1's
        ("zero-byte", 3, "rank-00000.npz: restart shard of 0 bytes"),
        ("truncated", 2, "rank-00001.npz: restart shard of"),
        (
            "wrong count",
            3,
            "rank-00002.npz: restart shard missing",
        ),  # index.json says 3 shards, 2 were written
        ("extra", 2, "rank-00002.npz: a restart shard the index does not list"),
    ],
)
def test_a_damaged_sharded_restart_is_refused_naming_the_shard_on_any_rank_count(
    tmp_path, damage, ranks, named
):
    """Written on 2 ranks, damaged, resumed on 2 or 3: exit 2 within the 60 s timeout, one line naming the shard (the
    set is checked by rank 0 before any rank reads; checksums catch what sizes do not, on the rank that reads it)."""
    import json

    _setup(tmp_path)
    assert _write6(tmp_path, 2, "two", 20).returncode == 0
    rs = tmp_path / "two" / "restart.shards"
    if damage == "missing":
        (rs / "rank-00001.npz").unlink()
    elif damage == "duplicate":
        (rs / "rank-00001.npz").write_bytes((rs / "rank-00000.npz").read_bytes())
    elif damage == "zero-byte":
        (rs / "rank-00000.npz").write_bytes(b"")
    elif damage == "truncated":
        data = (rs / "rank-00001.npz").read_bytes()
        (rs / "rank-00001.npz").write_bytes(data[: len(data) // 2])
    elif damage == "wrong count":
        index = json.loads((rs / "index.json").read_text())
        index["shards"] = 3
        (rs / "index.json").write_text(json.dumps(index))
    elif damage == "extra":
        (rs / "rank-00002.npz").write_bytes((rs / "rank-00000.npz").read_bytes())
    p = _resume(tmp_path, ranks, f"resumed-{damage.replace(' ', '-')}", "two/restart.shards")
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and named in lines[0], p.stderr


def test_a_shard_that_matches_in_size_but_not_in_content_is_named_by_its_checksum(tmp_path):
    _setup(tmp_path)
    assert _write6(tmp_path, 2, "two", 20).returncode == 0
    f = tmp_path / "two" / "restart.shards" / "rank-00001.npz"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the size is right
    f.write_bytes(bytes(data))
    p = _resume(tmp_path, 3, "resumed", "two/restart.shards")
    assert (
        p.returncode == 2
        and "rank-00001.npz: restart shard does not match its checksum" in p.stderr
    ), p.stderr[-2000:]


def test_merge_joins_the_parts_of_a_run_resumed_on_another_rank_count(tmp_path, capsys):
    """2 ranks to step 20, resumed on 3 ranks to 40 (its shards go to trajectory.shards-from-step-20): merge joins both
    parts in step order (0, 20, 40: each step once) and equals one unbroken rank; its output may not be an input or an
    existing file; a damaged trajectory shard is named."""
    from allegro_fm_md import read_frames
    from allegro_fm_md.cli import main

    _setup(tmp_path)
    (tmp_path / "one.toml").write_text(
        RUN6.format(integrator="nve", steps=40, out="one", shards="false", extra="")
    )
    subprocess.run(
        [sys.executable, "-W", "ignore", "-m", "allegro_fm_md.cli", "run", "one.toml", "-q"],
        cwd=tmp_path,
        check=True,
    )
    assert _write6(tmp_path, 2, "chain", 20).returncode == 0
    p = _write6(tmp_path, 3, "chain", 40, 'restart_from = "chain/restart.shards"')
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "chain" / "trajectory.shards-from-step-20" / "rank-00002.h5").exists()
    shards = tmp_path / "chain" / "trajectory.shards"
    capsys.readouterr()
    assert main(["merge", str(shards), "-o", str(tmp_path / "merged.h5md")]) == 0
    assert (
        "joined from 2 parts (trajectory.shards, trajectory.shards-from-step-20)"
        in capsys.readouterr().out
    )
    ours, ref = (
        read_frames(tmp_path / "merged.h5md"),
        read_frames(tmp_path / "one" / "trajectory.h5md"),
    )
    assert [f.info["step"] for f in ours] == [f.info["step"] for f in ref] == [0, 20, 40]
    for a, b in zip(ours, ref, strict=True):
        d = a.positions - b.positions
        frac = d @ np.linalg.inv(np.array(b.cell))
        assert np.abs((frac - np.round(frac)) @ np.array(b.cell)).max() < 1e-9
    for target, msg in (
        (shards / "rank-00000.h5", "inside the input"),
        (tmp_path / "merged.h5md", "exists; use --overwrite"),
    ):
        before = target.read_bytes()
        assert main(["merge", str(shards), "-o", str(target)]) == 2
        assert msg in capsys.readouterr().err and target.read_bytes() == before
    assert (
        main(["merge", str(shards), "-o", str(tmp_path / "merged.h5md"), "--overwrite", "-q"]) == 0
    )
    bad = shards / "rank-00001.h5"
    bad.write_bytes(bad.read_bytes()[:600])
    assert main(["merge", str(shards), "-o", str(tmp_path / "again.h5md")]) == 2
    assert "rank-00001.h5: not a readable trajectory shard" in capsys.readouterr().err
    assert not (tmp_path / "again.h5md").exists()


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """A sharded restart of the 6 x 4 x 4 cell written on 2 ranks (step 20): the resume cases read it."""
    tmp = tmp_path_factory.mktemp("faults")
    _setup(tmp)
    assert _write6(tmp, 2, "base", 20).returncode == 0
    return tmp


@pytest.mark.parametrize("ranks", [2, 3, 4])
@pytest.mark.parametrize(
    "point, kind",
    [("setup", "fault"), ("setup", "input"), ("restart-read", "fault"), ("shard-write", "fault")],
)
def test_a_failure_on_one_rank_at_a_collective_point_ends_every_rank(
    written, ranks, point, kind, monkeypatch
):
    """The last rank fails at each collective point (ALLEGRO_FM_FAULT, faults.py): every rank ends within the 60 s
    timeout, with exit 1 (a fault) or 2 (bad input), one line naming the rank and the point, and no lock left."""
    name = f"{point}-{kind}-{ranks}"
    monkeypatch.setenv(
        "ALLEGRO_FM_FAULT", f"{point}@{ranks - 1}" + (":input" if kind == "input" else "")
    )
    extra = 'restart_from = "base/restart.shards"' if point == "restart-read" else ""
    p = _write6(written, ranks, name, 40 if extra else 20, extra)
    assert p.returncode == (2 if kind == "input" else 1), (p.returncode, p.stderr[-2000:])
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    what = "fault" if kind == "fault" else "bad input"
    assert (
        len(lines) == 1
        and f"rank {ranks - 1}: " in lines[0]
        and f"injected {what} at {point}" in lines[0]
    ), p.stderr
    assert not (written / name / ".allegro-fm-md.lock").exists()
    if (
        point == "shard-write"
    ):  # the last good restart of the run survives a failed write (here: none was complete)
        assert not (written / name / "restart.shards.partial" / "index.json").exists()


def test_a_fault_while_merging_is_one_line(written, monkeypatch, capsys):
    from allegro_fm_md.cli import main

    monkeypatch.setenv("ALLEGRO_FM_FAULT", "merge@0")
    assert (
        main(["merge", str(written / "base" / "trajectory.shards"), "-o", str(written / "m.h5md")])
        == 1
    )
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "injected fault at merge" in err
        and not (written / "m.h5md").exists()
    )


def test_read_restart_shards_checks_each_shard_against_its_checksum(tmp_path):
    """The same check one level down, in one process: a shard whose content changed but not its size is refused by the
    reader, naming it; the untouched restart reads back the state that was written."""
    from allegro_fm_md import MDInputError, SerialComm, State
    from allegro_fm_md.restart import read_restart_shards, write_restart_shards

    a = bulk("Ar", "fcc", a=5.3, cubic=True) * (2, 2, 2)
    st = State(
        a.positions.copy(),
        np.ones((len(a), 3)),
        a.get_masses(),
        np.array(a.cell),
        a.pbc.copy(),
        step=7,
        ids=np.arange(len(a)),
        types=np.zeros(len(a), int),
    )
    path = write_restart_shards(tmp_path / "restart.shards", st, {}, SerialComm())
    np.testing.assert_array_equal(read_restart_shards(path).arrays["positions"], st.positions)
    f = path / "rank-00000.npz"
    data = bytearray(f.read_bytes())
    data[-100] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(
        MDInputError, match="rank-00000.npz: restart shard does not match its checksum"
    ):
        read_restart_shards(path)
