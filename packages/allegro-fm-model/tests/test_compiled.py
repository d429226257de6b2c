"""The AOTInductor deployment file: same energy, forces and virial as the eager model, through the same
Potential call (local/ghost split, periodic shifts) and the ASE calculator. One compile (a C++ build, minutes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from allegro_fm_model import (
    AllegroFMCalculator,
    AllegroPotential,
    CompiledAllegroPotential,
    build_model,
    load_potential,
    periodic_edges,
    tiny_preset,
)
from allegro_fm_model.compiled import compile_graph_model
from ase.build import bulk

SPECIES = ("H", "C", "O", "Si", "Ca")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    import torch

    torch.manual_seed(0)
    model = build_model(tiny_preset(), SPECIES, dtype="float64", seed=5)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.3 * torch.randn_like(prm))
    eager = AllegroPotential(model, SPECIES, cutoff=5.2)
    out = tmp_path_factory.mktemp("compiled") / "tiny.nequip.pt2"
    compile_graph_model(model, out)
    return eager, out


def _cell():
    a = bulk("CaO", "rocksalt", a=4.8, cubic=True) * (2, 1, 1)
    a.symbols[[1, 5]] = "Si"
    a.rattle(0.1, seed=2)
    return a


def test_compiled_file_matches_eager_with_shifts_and_ghost_split(pair):
    eager, path = pair
    comp = load_potential(path)
    assert (
        isinstance(comp, CompiledAllegroPotential)
        and comp.species == SPECIES
        and comp.cutoff == pytest.approx(5.2)
    )
    a = _cell()
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, 5.2)
    types = eager.types_of(a.get_chemical_symbols())
    r0 = eager.compute(a.positions, types, ei, len(a), sh)
    r1 = comp.compute(a.positions, types, ei, len(a), sh)
    assert r1.energy == pytest.approx(r0.energy, rel=1e-10)
    np.testing.assert_allclose(r1.forces, r0.forces, atol=1e-9)
    np.testing.assert_allclose(r1.virial, r0.virial, atol=1e-9)
    np.testing.assert_allclose(r1.atomic_energies, r0.atomic_energies, atol=1e-10)
    assert abs(r0.forces).max() > 1e-2  # the comparison is not between zeros
    # the engine's split: the first half local, periodic neighbours of local atoms as explicit ghosts
    n_loc = len(a) // 2
    keep = ei[0] < n_loc
    eil, shl = ei[:, keep], sh[keep]
    moved = np.abs(shl).sum(1) != 0
    gpos = a.positions[eil[1, moved]] + shl[moved]
    pos = np.concatenate([a.positions, gpos])
    typ = np.concatenate([types, types[eil[1, moved]]])
    eil = eil.copy()
    eil[1, moved] = len(a) + np.arange(moved.sum())
    typ = np.stack([typ, typ], 1)[:, 0]  # a strided view, as an engine may pass
    assert not typ.flags["C_CONTIGUOUS"]
    part = comp.compute(pos, typ, eil, n_loc, None)
    ref = eager.compute(pos, typ, eil, n_loc, None)
    assert part.energy == pytest.approx(ref.energy, rel=1e-10)
    np.testing.assert_allclose(part.forces, ref.forces, atol=1e-9)


def test_compiled_file_in_ase_and_bad_inputs(pair, tmp_path):
    eager, path = pair
    comp = CompiledAllegroPotential(path)
    a = _cell()
    a.calc = AllegroFMCalculator(comp)
    b = a.copy()
    b.calc = AllegroFMCalculator(eager)
    np.testing.assert_allclose(a.get_stress(), b.get_stress(), atol=1e-10)
    # no neighbours within the cutoff: isolated atoms, zero forces, the eager model's energy
    from ase import Atoms

    iso = Atoms("CO", positions=[[0, 0, 0], [20, 0, 0]])
    iso.calc = AllegroFMCalculator(comp)
    np.testing.assert_allclose(iso.get_forces(), 0.0)
    iso2 = iso.copy()
    iso2.calc = AllegroFMCalculator(eager)
    assert iso.get_potential_energy() == pytest.approx(iso2.get_potential_energy(), abs=1e-10)
    with pytest.raises(ValueError, match="element 'N'"):
        comp.types_of(["Ca", "N"])
    bad = tmp_path / "broken.nequip.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="broken.nequip.pt2"):
        CompiledAllegroPotential(bad)
    with pytest.raises(ValueError, match=r"\.nequip\.pt2"):
        compile_graph_model(eager.model, tmp_path / "x.pt")


def test_md_runs_compile_a_packaged_model_on_first_use_and_cache_it(monkeypatch, capsys):
    """allegro-fm-md's kind "allegro" compiles the shipped model once (a message says so), keyed by the file's SHA-256,
    torch version and device; the next run takes the cached file without compiling; compile = false and
    ALLEGRO_FM_COMPILE=0 load it eager; the compiled file predicts the eager model's forces."""
    from types import SimpleNamespace

    import allegro_fm_model.plugin as plugin
    from allegro_fm_model.plugin import compiled_cache_dir, md_potential

    spec = SimpleNamespace(model="allegro-fm-mini", options={})
    pot = md_potential(spec, [], "cpu")
    assert isinstance(pot, CompiledAllegroPotential)
    assert pot.path.parent == compiled_cache_dir() and "-cpu-" in pot.path.name
    assert (
        pot.level_of_theory == "PBE~SevenNet-0"
    )  # the compiled file keeps the package's level of theory
    monkeypatch.setattr(
        plugin,
        "compile_model",
        lambda *a, **k: pytest.fail("compiled again instead of using the cache"),
    )
    capsys.readouterr()
    again = md_potential(spec, [], "cpu")
    assert again.path == pot.path and "compiling" not in capsys.readouterr().out
    eager = md_potential(
        SimpleNamespace(model="allegro-fm-mini", options={"compile": False}), [], "cpu"
    )
    assert isinstance(eager, AllegroPotential)
    monkeypatch.setenv("ALLEGRO_FM_COMPILE", "0")
    assert isinstance(md_potential(spec, [], "cpu"), AllegroPotential)
    with pytest.raises(ValueError, match="unknown keys"):
        md_potential(
            SimpleNamespace(model="allegro-fm-mini", options={"compiled": True}), [], "cpu"
        )
    a = _cell()
    a.symbols[[0, 2]] = "O"
    a.symbols[[3]] = "H"
    types = eager.types_of(a.get_chemical_symbols())
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, eager.cutoff)
    r0, r1 = (
        eager.compute(a.positions, types, ei, len(a), sh),
        pot.compute(a.positions, types, ei, len(a), sh),
    )
    np.testing.assert_allclose(r1.forces, r0.forces, atol=1e-4 * max(1.0, np.abs(r0.forces).max()))


def test_float32_model_compiles_to_pair_allegros_float64_convention(tmp_path, caplog):
    """A float32 model's compiled file takes float64 positions and returns float64 forces (what LAMMPS pair_allegro
    feeds and reads; nequip-compile's convention), equal to the eager model to float32 round-off. A file traced with
    float32 positions (allegro-fm-model < 0.1.0.dev1) gives NaN for float64 positions, since AOTInductor does not check
    dtypes: such a file is recognised by the probe at load and still fed float32, with a warning."""
    import torch
    from nequip.data import AtomicDataDict as K

    torch.manual_seed(0)
    model = build_model(tiny_preset(), SPECIES, dtype="float32", seed=7)
    eager = AllegroPotential(model, SPECIES, cutoff=5.2)
    a = _cell()
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, 5.2)
    types = eager.types_of(a.get_chemical_symbols())
    ref = eager.compute(a.positions, types, ei, len(a), sh)
    assert abs(ref.forces).max() > 1e-3
    new = compile_graph_model(model, tmp_path / "new.nequip.pt2")
    old = compile_graph_model(model, tmp_path / "old.nequip.pt2", _positions_dtype=torch.float32)
    comp = CompiledAllegroPotential(new)
    assert comp.positions_dtype == torch.float64 and comp._probe_positions_dtype() == torch.float64
    r = comp.compute(a.positions, types, ei, len(a), sh)
    assert r.energy == pytest.approx(ref.energy, abs=1e-4 * len(a))  # float32 round-off, stated
    np.testing.assert_allclose(r.forces, ref.forces, atol=2e-4)
    two = {
        K.POSITIONS_KEY: torch.tensor([[0.0, 0.0, 0.0], [1.5, 0.3, 0.0]], dtype=torch.float64),
        K.EDGE_INDEX_KEY: torch.tensor([[0, 1], [1, 0]]),
        K.ATOM_TYPE_KEY: torch.tensor([2, 4]),
    }
    out = comp.model(two)  # the raw call pair_allegro makes
    assert out[K.FORCE_KEY].dtype == torch.float64 and torch.isfinite(out[K.FORCE_KEY]).all()
    with caplog.at_level("WARNING"):
        legacy = CompiledAllegroPotential(old)
    assert legacy.positions_dtype == torch.float32 and "pair_allegro" in caplog.text
    assert not torch.isfinite(legacy.model(two)[K.FORCE_KEY]).all()  # why the probe exists
    r_old = legacy.compute(a.positions, types, ei, len(a), sh)
    np.testing.assert_allclose(r_old.forces, ref.forces, atol=2e-4)


@pytest.mark.parametrize("ranks", [1, 2])
def test_compiled_file_in_a_real_lammps_pair_allegro(tmp_path, ranks):
    """In a LAMMPS built with pair_nequip_allegro and NEQUIP_AOT_COMPILE=ON (path in $AFM_LMP_ALLEGRO; recipe in
    docs/packages/allegro-fm-md.md), the file ``allegro-fm export --compiled`` writes gives the ASE calculator's
    energy, forces and pressure on a periodic triclinic cell, on 1 and 2 MPI ranks (run 0). Float32 model: energies to
    1e-6 eV/atom, forces to 1e-4 eV/A (round-off, stated)."""
    import os
    from pathlib import Path

    lmp = os.environ.get("AFM_LMP_ALLEGRO", "")
    if not lmp:
        pytest.skip(
            "set AFM_LMP_ALLEGRO to a LAMMPS binary with pair_style allegro (see docs/packages/allegro-fm-md.md)"
        )
    import ase.io
    from allegro_fm_model import compile_model, pair_allegro_single_point

    pt2 = compile_model("allegro-fm-mini", tmp_path / "mini.nequip.pt2")
    atoms = ase.io.read(
        Path(__file__).resolve().parents[3]
        / "examples"
        / "tobermorite-11a"
        / "tobermorite-11A.extxyz"
    ) * (2, 2, 1)
    atoms.rattle(0.05, seed=3)
    pt = pair_allegro_single_point(lmp, atoms, pt2, tmp_path, ranks=ranks)
    e_lmp, f_lmp, p_lmp = pt.energy, pt.forces, pt.pressure_bar
    atoms.calc = AllegroFMCalculator(load_potential("allegro-fm-mini"))
    assert e_lmp == pytest.approx(atoms.get_potential_energy(), abs=1e-6 * len(atoms))
    np.testing.assert_allclose(f_lmp, atoms.get_forces(), atol=1e-4)
    p_ase = (
        -atoms.get_stress()[:3].mean() / 1e-4 * 160.21766208
    )  # eV/A^3 -> bar (LAMMPS metal units); no velocities
    assert p_lmp == pytest.approx(p_ase, rel=1e-4, abs=0.5)


def test_a_damaged_cache_entry_is_rebuilt_once_then_named(tmp_path, monkeypatch, caplog):
    """A cache entry that does not load (a compile killed half way) is compiled again once; if that fails too, the error
    names the cache file instead of failing every run."""
    import shutil
    from types import SimpleNamespace

    import allegro_fm_model.plugin as plugin

    good = plugin.compiled_on_first_use(
        "allegro-fm-mini", "cpu", progress=False
    )  # the real cache (compiled by now)
    monkeypatch.setenv("ALLEGRO_FM_CACHE", str(tmp_path))
    calls = []

    def fake_compile(src, out, device):  # stands in for the C++ build: the good file, or garbage
        calls.append(out)
        if len(calls) <= 1 or not bad_rebuild:
            shutil.copy(good, out)
        else:
            out.write_bytes(b"garbage")

    monkeypatch.setattr(plugin, "compile_model", fake_compile)
    bad_rebuild = False
    cached = tmp_path / good.name
    cached.write_bytes(b"a compile killed half way")
    spec = SimpleNamespace(model="allegro-fm-mini", options={})
    pot = plugin.md_potential(spec, [], "cpu")
    assert (
        isinstance(pot, CompiledAllegroPotential)
        and len(calls) == 1
        and "compiling it again" in caplog.text
    )
    cached.write_bytes(b"damaged again")
    bad_rebuild = True
    calls.clear()
    calls.append("first")  # the next fake compile writes garbage
    with pytest.raises(
        ValueError,
        match=f"{cached.name}: the compiled model cache entry does not load even after recompiling",
    ):
        plugin.md_potential(spec, [], "cpu")


def test_compiled_per_atom_virials_equal_eager(pair):
    """The compiled file returns forces only; its per-atom virials come from a call with one ghost per edge
    (compiled.edge_copy_graph). Float64: equal to the eager model's direct per-edge gradients to 1e-9 eV."""
    eager, path = pair
    comp = load_potential(path)
    a = _cell()
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, 5.2)
    types = eager.types_of(a.get_chemical_symbols())
    eager.per_atom_virial = comp.per_atom_virial = True
    try:
        r0 = eager.compute(a.positions, types, ei, len(a), sh)
        r1 = comp.compute(a.positions, types, ei, len(a), sh)
    finally:
        eager.per_atom_virial = comp.per_atom_virial = False
    assert abs(r0.atomic_virials).max() > 1e-2
    np.testing.assert_allclose(r1.atomic_virials, r0.atomic_virials, atol=1e-9)
    np.testing.assert_allclose(r1.forces, r0.forces, atol=1e-9)  # the per-edge graph's forces too
    np.testing.assert_allclose(r1.atomic_virials.sum(0), r1.virial, atol=1e-9)


def test_pair_allegro_single_point_names_a_failed_lammps_run(tmp_path):
    """A LAMMPS that fails (here a stand-in printing LAMMPS's error line) gives a RuntimeError naming the binary, the
    model file and LAMMPS's last words; nothing is parsed from a failed run."""
    import ase.io
    from allegro_fm_model import pair_allegro_single_point

    fake = tmp_path / "lmp"
    fake.write_text("#!/bin/sh\necho 'ERROR: Unrecognized pair style allegro'\nexit 1\n")
    fake.chmod(0o755)
    atoms = ase.io.read(
        Path(__file__).parent / "data" / "legacy" / "structures.extxyz", 1
    )  # calcite, any periodic cell
    with pytest.raises(
        RuntimeError, match=r"lmp failed on .*model.pth[\s\S]*Unrecognized pair style"
    ):
        pair_allegro_single_point(fake, atoms, tmp_path / "model.pth", tmp_path / "w")
