"""Launching on clusters: the rank plan (--dry-run), accelerator binding by node-local rank, and the job scripts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import ase.io
import numpy as np
import pytest
from allegro_fm_md import MDInputError
from allegro_fm_md.comm import node_local_rank
from allegro_fm_md.ghosts import periodic_halo
from allegro_fm_md.plan import plan
from allegro_fm_md.potentials import device_for_rank
from ase.build import bulk, fcc111

JOBS = Path(__file__).parents[3] / "examples" / "jobs"


def test_plan_counts_local_atoms_exactly_and_bounds_the_ghosts():
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (6, 6, 6)
    one = plan(a.positions, np.array(a.cell), a.pbc, 6.5, 0.5, 1)
    exact = len(periodic_halo(a.positions, np.array(a.cell), 7.0).owner)
    assert one.ranks[0].local == len(a) and exact <= one.ranks[0].ghosts <= 1.3 * exact
    eight = plan(a.positions, np.array(a.cell), a.pbc, 6.5, 0.5, 8)
    assert eight.grid == (2, 2, 2) and sum(r.local for r in eight.ranks) == len(a)
    assert {r.local for r in eight.ranks} == {len(a) // 8}
    assert "rank grid 2 x 2 x 2" in eight.table()
    with_model = plan(a.positions, np.array(a.cell), a.pbc, 6.5, 0.5, 8, memory_per_edge_bytes=1e4)
    assert with_model.ranks[0].model_bytes == pytest.approx(
        1e4 * with_model.ranks[0].edges, rel=1e-6
    )


def test_the_plan_from_the_unit_cell_equals_the_plan_of_the_built_system():
    """Planned from a triclinic unit cell and its replicate counts (never built), every rank's local atoms, ghosts and
    edges equal those planned from the whole structure, which the engine's exchange checks exactly (test above)."""
    from allegro_fm_md.plan import plan_supercell

    unit = bulk("Cu", "fcc", a=3.6) * (1, 1, 2)  # primitive (triclinic) cell, 2 atoms
    unit.rattle(0.05, seed=2)
    reps = (9, 7, 5)
    whole = unit * reps
    for ranks in (1, 4, 6):
        a = plan_supercell(unit, reps, 4.0, 0.5, ranks)
        b = plan(whole.positions, np.array(whole.cell), whole.pbc, 4.0, 0.5, ranks)
        assert a.grid == b.grid and a.atoms == b.atoms == len(whole)
        assert [(r.local, r.ghosts, r.edges) for r in a.ranks] == [
            (r.local, r.ghosts, r.edges) for r in b.ranks
        ]


def test_dry_run_never_builds_the_system(tmp_path, capsys, monkeypatch):
    """A 10^9-atom plan on 65 536 ranks from a 4-atom unit cell: the whole structure is never made (Supercell.atoms
    raises here), every rank holds 15 000 to 16 000 atoms, and the largest rank's memory is printed."""
    from allegro_fm_md.cli import main
    from allegro_fm_md.supercell import Supercell

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        Supercell, "atoms", lambda self: pytest.fail("the dry run built the whole system")
    )
    ase.io.write("ar.extxyz", bulk("Ar", "fcc", a=5.26, cubic=True))
    Path("run.toml").write_text(
        '[system]\nstructure = "ar.extxyz"\nreplicate = [630, 630, 630]\n[potential]\nkind = "lj"\n'
        'cutoff = 6.5\n[run]\nsteps = 10\n[output]\ndir = "out"\n'
    )
    assert main(["run", "run.toml", "--dry-run", "--ranks", "65536"]) == 0
    out = capsys.readouterr().out
    assert "1000188000 atoms" in out and "65536 ranks" in out and "largest rank: 16000 atoms" in out
    assert not Path("out").exists()


def test_plan_reports_empty_ranks_and_refuses_cells_thinner_than_the_halo():
    slab = fcc111("Ar", size=(6, 6, 4), a=5.26, vacuum=40.0)
    slab.pbc = (True, True, False)
    p = plan(
        slab.positions, np.array(slab.cell), slab.pbc, 6.5, 0.5, 8
    )  # most of the z range is vacuum: empty ranks run
    assert (
        p.empty_ranks > 0
        and "hold no atoms" in p.table()
        and sum(r.local for r in p.ranks) <= len(slab)
    )
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    thin = plan(
        a.positions, np.array(a.cell), a.pbc, 6.5, 0.5, 27
    )  # 5.26 A subdomains, 7 A halo: more swaps, planned
    assert thin.grid == (3, 3, 3) and {r.local for r in thin.ranks} == {4}
    one = bulk("Ar", "fcc", a=5.26, cubic=True)
    with pytest.raises(
        MDInputError, match=r"thinner than cutoff"
    ):  # the cell itself is thinner than the halo
        plan(one.positions, np.array(one.cell), one.pbc, 6.5, 0.5, 1)


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from allegro_fm_md.cli import main

    monkeypatch.chdir(tmp_path)
    ase.io.write("ar.extxyz", bulk("Ar", "fcc", a=5.26, cubic=True) * (4, 4, 4))
    Path("run.toml").write_text(
        '[system]\nstructure = "ar.extxyz"\n[potential]\nkind = "lj"\ncutoff = 6.5\n'
        '[run]\nsteps = 10\n[output]\ndir = "out"\n'
    )
    assert main(["run", "run.toml", "--dry-run", "--ranks", "4"]) == 0
    out = capsys.readouterr().out
    assert "256 atoms" in out and "| 3 |" in out and not Path("out").exists()
    Path("run.toml").write_text(
        Path("run.toml").read_text().replace("steps = 10", 'steps = 10\nintegrator = "verlet2"')
    )
    assert (
        main(["run", "run.toml", "--dry-run", "--ranks", "4"]) == 2
    )  # the plan refuses what the run would refuse
    assert "unknown integrator 'verlet2'" in capsys.readouterr().err


def test_binding_uses_the_node_local_rank():
    """Two nodes with 6 ranks each and 4 GPUs per node: global rank 6 is the first rank of node 2 and takes cuda:0
    (the global rank modulo 4 would give cuda:2 and leave cuda:0 of node 2 to share)."""
    env = {"SLURM_LOCALID": "0", "SLURM_NTASKS_PER_NODE": "6", "SLURM_PROCID": "6"}
    local, size = node_local_rank(None, env)
    assert (local, size) == (0, 6)
    assert device_for_rank("cuda", local, size, count=4) == "cuda:0"
    assert node_local_rank(None, {"PALS_LOCAL_RANKID": "11", "PALS_LOCAL_SIZE": "12"}) == (11, 12)
    assert device_for_rank("xpu", 11, 12, count=12) == "xpu:11"
    assert node_local_rank(None, {}) == (0, 1)
    assert device_for_rank("cpu", 5, 8) == "cpu" and device_for_rank("cuda:1", 5, 8) == "cuda:1"
    with pytest.raises(MDInputError, match="none is available"):
        device_for_rank("xpu", 0, 1, count=0)


@pytest.mark.parametrize("script", ["slurm-gpu.sh", "slurm-cpu.sh", "pbs-aurora.sh"])
def test_job_scripts_parse_and_plan_first(script):
    path = JOBS / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text()
    assert text.index("--dry-run") < text.rindex(
        "allegro-fm-md run"
    )  # the plan runs before the job's run


def test_xpu_backend_is_native_torch_xpu_and_ipex_only_on_an_older_torch():
    """Decided (docs/architecture.md, README): native torch.xpu by default; intel-extension-for-pytorch is imported only
    where torch lacks torch.xpu; neither is a clear error. Checked with fake torch modules (no XPU here)."""
    from types import SimpleNamespace

    from allegro_fm_md.potentials import accelerator_backend

    imported = []

    def importer(name):
        imported.append(name)
        if name == "intel_extension_for_pytorch":
            old.xpu = SimpleNamespace(
                device_count=lambda: 12
            )  # what IPEX registers on an older torch
            return SimpleNamespace()
        raise ImportError(name)

    native = SimpleNamespace(__version__="2.13.0", xpu=SimpleNamespace(device_count=lambda: 12))
    assert accelerator_backend("xpu", native, importer).device_count() == 12 and imported == []
    old = SimpleNamespace(__version__="2.3.1")
    assert accelerator_backend("xpu", old, importer).device_count() == 12 and imported == [
        "intel_extension_for_pytorch"
    ]
    with pytest.raises(
        MDInputError, match="no native torch.xpu and intel_extension_for_pytorch is not installed"
    ):
        accelerator_backend(
            "xpu",
            SimpleNamespace(__version__="2.3.1"),
            lambda name: (_ for _ in ()).throw(ImportError(name)),
        )


def test_a_per_rank_device_mask_takes_the_one_device_the_rank_sees(caplog):
    """Aurora's gpu_tile_compact.sh sets ZE_AFFINITY_MASK per rank: each of 12 ranks sees one tile, takes xpu:0, and no
    'ranks share devices' warning is printed; without a mask 12 ranks on 1 visible device do get it."""
    assert device_for_rank("xpu", 7, 12, count=1, environ={"ZE_AFFINITY_MASK": "3.1"}) == "xpu:0"
    assert "share" not in caplog.text
    assert (
        device_for_rank("xpu", 7, 12, count=1, environ={}) == "xpu:0"
        and "12 ranks on this node share 1 xpu" in caplog.text
    )


def test_ghosts_of_a_simple_cubic_lattice_are_counted_by_hand():
    """A second oracle for the ghosts: a simple-cubic lattice (2 A, 12 x 12 x 12) on 2 x 2 x 2 ranks; each subdomain
    holds 6 x 6 x 6 atoms and its halo (3.5 A) takes 2 lattice planes beyond every face, so it sees
    (6 + 2 x 2)^3 - 6^3 = 784 ghosts, and every atom 6 neighbours within 2.5 A."""
    from allegro_fm_md.plan import plan_supercell
    from ase import Atoms

    unit = Atoms("Ar", positions=[(1.0, 1.0, 1.0)], cell=[2.0, 2.0, 2.0], pbc=True)
    p = plan_supercell(unit, (12, 12, 12), 2.5, 1.0, 8)
    assert p.grid == (2, 2, 2)
    assert {(r.local, r.ghosts, r.edges) for r in p.ranks} == {(216, 784, 216 * 6)}
