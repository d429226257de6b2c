"""N-rank runs equal the 1-rank run to float round-off (mpiexec -n 1, 2, 4, 8; oversubscribed here).

The system (triclinic LJ argon, 108 atoms) drifts by ~30 A over the run, so every atom crosses rank
boundaries many times: migration, ghost exchange and reverse force communication are all exercised.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

#: ALLEGRO_FM_LONG_MPI=1: the issue's full check (1000 steps, 2/4/8 ranks; ~10 min here); CI: LJ on 2/4, the model on 2
LONG = os.environ.get("ALLEGRO_FM_LONG_MPI") == "1"
SCRIPT = Path(__file__).parent / "mpi" / "run_decomposed.py"
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")

try:
    import mpi4py  # noqa: F401

    HAVE_MPI4PY = True
except ImportError:
    HAVE_MPI4PY = False

pytestmark = pytest.mark.skipif(
    not (MPIEXEC and HAVE_MPI4PY), reason="needs mpi4py and mpiexec (pip install mpi4py mpich)"
)
STEPS = 1000


def _run(n: int, tmp: Path, steps: int = STEPS, kind: str = "lj") -> dict:
    out = tmp / f"{kind}{n}.npz"
    subprocess.run(
        [
            MPIEXEC,
            "-n",
            str(n),
            sys.executable,
            "-W",
            "ignore",
            str(SCRIPT),
            str(out),
            str(steps),
            kind,
        ],
        check=True,
        timeout=7200 if LONG else 600,
        capture_output=True,
    )
    return dict(np.load(out))


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    return _run(1, tmp_path_factory.mktemp("mpi"))


@pytest.mark.parametrize("n", [2, 4, 8] if LONG else [2, 4])
def test_n_ranks_equal_one_rank(n, one_rank, tmp_path):
    """LJ argon drifting through a triclinic cell: 2 and 4 ranks over 1000 steps; with ALLEGRO_FM_LONG_MPI=1 also 8
    ranks (oversubscribed 4x on CI's 2 cores; 8 ranks run in the suite in test_shards' resume on 2 and 8)."""
    steps = STEPS if n < 8 or LONG else 300
    if steps != STEPS:
        (tmp_path / "ref").mkdir()
        one_rank = _run(1, tmp_path / "ref", steps)
    r = _run(n, tmp_path, steps)
    assert (
        np.prod(r["grid"]) == n and r["builds"] > 10
    )  # lists rebuilt (and atoms migrated) many times
    assert np.array_equal(r["ids"], one_rank["ids"])
    d = r["positions"] - one_rank["positions"]
    frac = d @ np.linalg.inv(one_rank["cell"])
    d = (frac - np.round(frac)) @ one_rank["cell"]
    print(
        f"{n} ranks, grid {tuple(r['grid'])}: max |dx| {np.abs(d).max():.1e} A, max |dF| "
        f"{np.abs(r['forces'] - one_rank['forces']).max():.1e} eV/A after {steps} steps"
    )
    assert np.abs(d).max() < 1e-9
    assert np.abs(r["forces"] - one_rank["forces"]).max() < 1e-9
    assert np.abs(r["etot"] - one_rank["etot"]).max() < 1e-9


def test_allegro_model_n_ranks_equal_one_rank(tmp_path):
    """The same exactness with a (tiny, float64) Allegro-FM model: edges centred on local atoms only; the
    triclinic CaO crystal drifts ~20 A in 1000 steps, so atoms cross rank boundaries in the long run."""
    pytest.importorskip("allegro_fm_model")
    steps = 1000 if LONG else 60
    ref = _run(1, tmp_path, steps, "allegro")
    for n in (
        (2, 4, 8) if LONG else (2,)
    ):  # 4 ranks of the model: test_shards and the LJ runs cover 4-rank grids
        r = _run(n, tmp_path, steps, "allegro")
        d = r["positions"] - ref["positions"]
        frac = d @ np.linalg.inv(ref["cell"])
        d = (frac - np.round(frac)) @ ref["cell"]
        print(
            f"Allegro, {n} ranks, {steps} steps, {r['builds']} list builds:"
            f" max |dx| {np.abs(d).max():.1e} A, max |dF| {np.abs(r['forces'] - ref['forces']).max():.1e} eV/A"
        )
        assert np.prod(r["grid"]) == n
        assert np.abs(d).max() < 1e-9 and np.abs(r["forces"] - ref["forces"]).max() < 1e-9
        assert np.abs(r["etot"] - ref["etot"]).max() < 1e-9


def test_slab_n_ranks_equal_one_rank(tmp_path):
    """A slab open along z (pbc = T, T, F) split across its vacuum (grid 1 x 1 x n): no images along z, atoms that
    drift below the box stay with the edge rank; positions, forces and energies equal one rank to round-off."""
    steps = 400 if LONG else 120
    ref = _run(1, tmp_path, steps, "slab")
    assert (
        ref["positions"][:, 2].min() < 0.0
    )  # the slab drifted out through the open bottom face: nothing wrapped it
    for n in (2, 4):
        r = _run(n, tmp_path, steps, "slab")
        assert tuple(r["grid"]) == (1, 1, n) and np.array_equal(r["ids"], ref["ids"])
        d = r["positions"] - ref["positions"]
        frac = d @ np.linalg.inv(ref["cell"])
        frac[:, :2] -= np.round(frac[:, :2])  # images only in-plane
        d = frac @ ref["cell"]
        assert np.abs(d).max() < 1e-9 and np.abs(r["forces"] - ref["forces"]).max() < 1e-9
        assert np.abs(r["etot"] - ref["etot"]).max() < 1e-9
    assert np.ptp(ref["etot"]) < 1e-3  # and NVE conserves energy


def test_npt_n_ranks_equal_one_rank(tmp_path):
    """NPT (Nose-Hoover chain + isotropic C-rescale at 0.5 GPa, the barostat noise drawn alike on every rank) on the
    drifting LJ crystal: the cell shrinks every step, the decomposition follows it, and 2 and 4 ranks equal 1 rank."""
    steps = 600 if LONG else 150
    ref = _run(1, tmp_path, steps, "npt")
    v0 = 64 * 5.30**3 / 4 * 4  # 256 atoms at a = 5.30 A
    assert abs(np.linalg.det(ref["cell"])) < 0.995 * v0  # compressed by the 0.5 GPa target
    for n in (2, 4):
        r = _run(n, tmp_path, steps, "npt")
        assert np.prod(r["grid"]) == n and np.array_equal(r["ids"], ref["ids"])
        np.testing.assert_allclose(r["cell"], ref["cell"], rtol=0, atol=1e-10)
        d = r["positions"] - ref["positions"]
        frac = d @ np.linalg.inv(ref["cell"])
        d = (frac - np.round(frac)) @ ref["cell"]
        assert np.abs(d).max() < 1e-9 and np.abs(r["forces"] - ref["forces"]).max() < 1e-9
        assert np.abs(r["etot"] - ref["etot"]).max() < 1e-9


@pytest.fixture(scope="module")
def allegro_30(tmp_path_factory):
    """The tiny float64 Allegro-FM model's plain 1-rank run of 30 steps: the reference of the variants below."""
    pytest.importorskip("allegro_fm_model")
    return _run(1, tmp_path_factory.mktemp("allegro-ref"), 30, "allegro")


def test_chunked_evaluation_n_ranks_equal_one_rank(tmp_path, monkeypatch, allegro_30):
    """The tiny float64 Allegro-FM model evaluated 150 edges at a time (chunked.py) on 2 ranks equals the unchunked
    1-rank run."""
    monkeypatch.setenv("CHUNK_EDGES", "150")
    _assert_same_run(_run(2, tmp_path, 30, "allegro"), allegro_30)


def _assert_same_run(r, ref, tol=1e-9):
    """Positions (minimum image), forces and total energies of two runs agree to ``tol``."""
    d = r["positions"] - ref["positions"]
    frac = d @ np.linalg.inv(ref["cell"])
    d = (frac - np.round(frac)) @ ref["cell"]
    assert np.abs(d).max() < tol and np.abs(r["forces"] - ref["forces"]).max() < tol
    assert np.abs(r["etot"] - ref["etot"]).max() < tol


def test_device_edges_n_ranks_equal_host_edges_one_rank(tmp_path, monkeypatch, allegro_30):
    """The device-edge path (Verlet candidates sent to the potential's device at rebuilds only, cutoff filter in torch)
    on the CPU device, 2 ranks, equals the host-filtered 1-rank run (float64)."""
    monkeypatch.setenv("DEVICE_EDGES", "1")
    _assert_same_run(_run(2, tmp_path, 30, "allegro"), allegro_30)


SIM = Path(__file__).parent / "mpi" / "run_simulation.py"


def _sim(n: int, outdir: Path, steps: int, restart: Path | None = None) -> None:
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-W", "ignore", str(SIM), str(outdir), str(steps)]
    subprocess.run(
        cmd + ([str(restart)] if restart else []), check=True, timeout=600, capture_output=True
    )


def test_simulation_output_and_restart_over_ranks(tmp_path):
    """Thermo on 2 ranks equals 1 rank; a 2-rank run resumed from its restart file is bit-for-bit identical."""
    from allegro_fm_md.trajectory import read_h5md_positions

    _sim(1, tmp_path / "one", 100)
    _sim(2, tmp_path / "two", 100)
    _sim(2, tmp_path / "split", 50)
    (tmp_path / "split" / "restart.npz").rename(tmp_path / "r50.npz")
    _sim(2, tmp_path / "split", 100, tmp_path / "r50.npz")
    a, b = np.loadtxt(tmp_path / "one" / "thermo.log"), np.loadtxt(tmp_path / "two" / "thermo.log")
    np.testing.assert_allclose(a[:, :13], b[:, :13], rtol=1e-9, atol=1e-12)  # all but atom-steps/s
    rb, rc = np.load(tmp_path / "two" / "restart.npz"), np.load(tmp_path / "split" / "restart.npz")
    for k in ("positions", "velocities", "forces", "ids"):
        assert np.array_equal(rb[k], rc[k]), k
    steps, pos, cells = read_h5md_positions(tmp_path / "two" / "trajectory.h5md")
    assert list(steps) == [0, 50, 100]
    frac = (pos[-1] - rb["positions"]) @ np.linalg.inv(
        cells[-1]
    )  # the restart is written after re-wrapping
    assert np.abs(frac - np.round(frac)).max() < 1e-12


def test_langevin_n_ranks_equal_one_rank(tmp_path):
    """Langevin noise keyed by (seed, step, atom id): the stochastic run on 2 and 4 ranks (and 8 with
    ALLEGRO_FM_LONG_MPI=1) equals 1 rank to round-off."""
    steps = 600 if LONG else 120
    ref = _run(1, tmp_path, steps, "langevin")
    for n in (2, 4, 8) if LONG else (2, 4):
        r = _run(n, tmp_path, steps, "langevin")
        assert np.array_equal(r["ids"], ref["ids"])
        d = r["positions"] - ref["positions"]
        frac = d @ np.linalg.inv(ref["cell"])
        d = (frac - np.round(frac)) @ ref["cell"]
        assert np.abs(d).max() < 1e-9 and np.abs(r["velocities"] - ref["velocities"]).max() < 1e-9


def test_langevin_restart_written_on_4_ranks_resumes_on_2_and_1(tmp_path):
    """A Langevin run written on 4 ranks (restart at step 50) resumes on 2 ranks and on 1 rank with the trajectory of
    the unbroken 1-rank run (the noise continues by step and atom id; nothing per rank is in the file)."""

    def sim(n, out, steps, restart="-"):
        cmd = [
            MPIEXEC,
            "-n",
            str(n),
            sys.executable,
            "-W",
            "ignore",
            str(SIM),
            str(out),
            str(steps),
            str(restart),
            "langevin",
        ]
        subprocess.run(cmd, check=True, timeout=600, capture_output=True)

    sim(1, tmp_path / "unbroken", 100)
    sim(4, tmp_path / "four", 50)
    for n in (2, 1):
        sim(n, tmp_path / f"resumed{n}", 100, tmp_path / "four" / "restart.npz")
        a, b = (
            np.load(tmp_path / "unbroken" / "restart.npz"),
            np.load(tmp_path / f"resumed{n}" / "restart.npz"),
        )
        d = a["positions"] - b["positions"]
        frac = d @ np.linalg.inv(a["cell"])
        d = (frac - np.round(frac)) @ a["cell"]
        assert np.array_equal(a["ids"], b["ids"]) and np.abs(d).max() < 1e-9, n
        assert np.abs(a["velocities"] - b["velocities"]).max() < 1e-9, n


def test_a_failing_rank_stops_every_rank_with_its_name_and_step(tmp_path):
    """No hang: mpiexec returns with an error naming rank 1 and the step; the last restart file is on disk."""
    script = Path(__file__).parent / "mpi" / "rank_failure.py"
    res = subprocess.run(
        [MPIEXEC, "-n", "2", sys.executable, "-W", "ignore", str(script), str(tmp_path / "out")],
        timeout=120,
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0
    assert (
        "rank 1, step 10: FloatingPointError: injected failure on this rank; aborting all 2 ranks"
        in res.stderr
    ), res.stderr
    assert (tmp_path / "out" / "restart.npz").exists()
    assert np.load(tmp_path / "out" / "restart.npz")["ids"].size == 108


def test_thin_subdomains_equal_one_rank(tmp_path, monkeypatch):
    """8 ranks along x of a cell 3.3 cutoffs long: each subdomain (2.65 A) is under half a cutoff (6.5 A), so the
    ghost exchange forwards over ceil(7.0 / 2.65) = 3 ranks each way; 60 drifting NVE steps equal 1 rank to 1e-10 A
    (float64 LJ)."""
    ref = _run(1, tmp_path, 60, "thin")
    monkeypatch.setenv("GRID", "8,1,1")
    (tmp_path / "eight").mkdir()
    r = _run(8, tmp_path / "eight", 60, "thin")
    assert tuple(r["grid"]) == (8, 1, 1) and r["builds"] > 5
    d = r["positions"] - ref["positions"]
    frac = d @ np.linalg.inv(ref["cell"])
    d = (frac - np.round(frac)) @ ref["cell"]
    assert np.abs(d).max() < 1e-10 and np.abs(r["forces"] - ref["forces"]).max() < 1e-10
