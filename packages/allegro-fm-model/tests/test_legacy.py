"""nequip 0.6.x / Allegro 0.3.0 deployed TorchScript files (the published Allegro-FM weights' format).

The fixture in tests/data/legacy was trained and deployed with nequip 0.6.1 + Allegro 0.3.0 and evaluated with
nequip 0.6.1's own NequIPCalculator (scripts/legacy_fixture/make_legacy_fixture.sh remakes it). The model is float32,
so agreement is to float32 round-off: 1e-5 relative on energies, 2e-5 eV/A on forces (|F| up to ~5 eV/A).
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import ase.io
import numpy as np
import pytest
from allegro_fm_model import (
    AllegroFMCalculator,
    LegacyAllegroPotential,
    LegacyModelError,
    load_potential,
    read_legacy_metadata,
)
from allegro_fm_model.calculator import periodic_edges
from allegro_fm_model.compiled import _with_ghosts

DATA = Path(__file__).parent / "data" / "legacy"
MODEL = DATA / "legacy-allegro-0.3.0.pth"


@pytest.fixture(scope="module")
def pot():
    return load_potential(MODEL)


@pytest.fixture(scope="module")
def reference():
    ref = json.loads((DATA / "reference.json").read_text())
    return list(zip(ase.io.read(DATA / "structures.extxyz", ":"), ref["results"]))


def test_metadata_and_type_mapping(pot):
    assert isinstance(pot, LegacyAllegroPotential)
    meta = read_legacy_metadata(MODEL)
    assert meta["nequip_version"] == "0.6.1" and meta["model_dtype"] == "float32"
    assert pot.species == ("O", "Ca", "H", "Si", "C")  # the file's order, not atomic-number order
    assert pot.cutoff == 5.2
    assert list(pot.types_of(["C", "O", "Ca", "H", "Si"])) == [4, 0, 1, 2, 3]
    assert "5 elements: O Ca H Si C" in pot.describe()
    with pytest.raises(ValueError, match=r"atom 1: element 'N'"):
        pot.types_of(["O", "N"])


def test_equals_nequip_061_calculator(pot, reference):
    """Energy, per-atom energies, forces and stress of nequip 0.6.1's NequIPCalculator on a small triclinic cell
    (edges shorter than r_max: several images of one atom), a hexagonal cell and an open molecule."""
    for atoms, r in reference:
        a = atoms.copy()
        a.calc = AllegroFMCalculator(pot)
        e = a.get_potential_energy()
        ds = np.abs(a.get_stress() - r["stress"]).max() if "stress" in r else 0.0
        print(
            f"{r['name']}: dE {e - r['energy']:.1e} eV, dF {np.abs(a.get_forces() - r['forces']).max():.1e} eV/A, "
            f"dS {ds:.1e} eV/A^3 vs nequip 0.6.1"
        )
        assert e == pytest.approx(r["energy"], rel=1e-5), r["name"]
        np.testing.assert_allclose(
            a.get_potential_energies(), r["energies"], rtol=0, atol=2e-5 * max(1, abs(e) / len(a))
        )
        np.testing.assert_allclose(a.get_forces(), r["forces"], rtol=0, atol=2e-5)
        if "stress" in r:
            np.testing.assert_allclose(
                a.get_stress(), r["stress"], rtol=0, atol=1e-6
            )  # eV/A^3 (0.16 MPa)
        else:
            assert not a.pbc.any()


def test_ghost_shifts_do_not_leak_into_the_energy(pot, reference):
    """Two 'ranks' each own half of the atoms and hold the rest as ghosts: energies add up to the whole, the per-species
    shifts of ghost atoms never enter, and the forces of the two halves add up to the whole."""
    atoms, r = reference[1]  # calcite, 30 atoms
    ei, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, pot.cutoff)
    types = pot.types_of(atoms.get_chemical_symbols())
    whole = pot.compute(atoms.positions, types, ei, len(atoms), sh)
    assert whole.energy == pytest.approx(r["energy"], rel=1e-5)
    pos, typ, ei_g, copy_of = _with_ghosts(atoms.positions, types, ei, sh)  # explicit ghost copies
    n = len(atoms)
    total_e, total_f = 0.0, np.zeros((n, 3))
    halves = [np.arange(n) < n // 2, np.arange(n) >= n // 2]
    for mine in halves:
        order = np.concatenate(
            [np.flatnonzero(mine), np.flatnonzero(~mine), np.arange(n, len(pos))]
        )  # locals first
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        e_idx = inv[ei_g[:, mine[ei_g[0]]]]  # this rank's edges: those centred on its own atoms
        res = pot.compute(pos[order], typ[order], e_idx, int(mine.sum()))
        assert res.atomic_energies.shape == (int(mine.sum()),)
        total_e += res.energy
        f = res.forces[inv]  # back to the original order (copies included)
        np.add.at(total_f, copy_of, f)
    assert total_e == pytest.approx(whole.energy, abs=2e-5)
    np.testing.assert_allclose(total_f, whole.forces, atol=2e-5)


def test_virial_equals_finite_difference_stress(pot, reference):
    """ASE stress from the virial vs -dE/d(strain)/V by central differences of the energy (float32 model: h = 1e-3)."""
    atoms = reference[0][0].copy()  # portlandite, triclinic
    atoms.calc = AllegroFMCalculator(pot)
    stress = atoms.get_stress(voigt=False)
    cell0, v0, h = np.array(atoms.cell), atoms.get_volume(), 1e-3
    fd = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            es = []
            for s in (h, -h):
                eps = np.eye(3)
                eps[i, j] += s
                b = atoms.copy()
                b.set_cell(cell0 @ eps, scale_atoms=True)
                b.calc = AllegroFMCalculator(pot)
                es.append(b.get_potential_energy())
            fd[i, j] = (es[0] - es[1]) / (2 * h) / v0
    fd = 0.5 * (fd + fd.T)
    print(f"stress {stress.ravel()} vs finite differences {fd.ravel()} eV/A^3")
    np.testing.assert_allclose(
        stress, fd, atol=2e-4
    )  # ~0.03 GPa: float32 energy differences over h
    assert np.abs(stress).max() > 5e-3  # a real test: the stress is far from zero


def test_forces_are_minus_gradient_and_invariant(pot, reference):
    mol = reference[2][0].copy()  # open molecule
    mol.calc = AllegroFMCalculator(pot)
    f, e0 = mol.get_forces(), mol.get_potential_energy()
    h = 1e-3
    for k, c in [(0, 0), (3, 1), (6, 2)]:
        es = []
        for s in (h, -h):
            b = mol.copy()
            b.positions[k, c] += s
            b.calc = AllegroFMCalculator(pot)
            es.append(b.get_potential_energy())
        assert -(es[0] - es[1]) / (2 * h) == pytest.approx(f[k, c], abs=5e-3)
    rot = mol.copy()
    rot.rotate(73, (1, 2, 0.5), center="COM")
    rot.translate((3.3, -1.2, 0.7))
    rot.calc = AllegroFMCalculator(pot)
    assert rot.get_potential_energy() == pytest.approx(e0, abs=1e-4)
    R = np.linalg.lstsq(
        mol.positions - mol.positions.mean(0), rot.positions - rot.positions.mean(0), rcond=None
    )[0]
    np.testing.assert_allclose(rot.get_forces(), f @ R, atol=1e-4)


def test_isolated_atoms_have_their_shift_and_no_force(pot):
    """An atom with no neighbour has no edge energy: its energy is its species' shift times the global scale, read here
    from the TorchScript file's own buffers (Allegro 0.3.0: per_species_rescale, then nequip's RescaleOutput)."""
    import torch

    sd = torch.jit.load(str(MODEL), map_location="cpu").state_dict()
    shifts, scales = (
        sd["model.model.func.per_species_rescale.shifts"].numpy(),
        sd["model.model.func.per_species_rescale.scales"].numpy(),
    )
    scale_by = float(sd["model.scale_by"])
    symbols = list(
        pot.species
    )  # every element, one isolated atom each, 20 A apart (beyond the cutoff)
    r = pot.compute(
        np.arange(len(symbols))[:, None] * np.array([[20.0, 0, 0]]),
        pot.types_of(symbols),
        np.zeros((2, 0), np.int64),
        len(symbols),
    )
    np.testing.assert_allclose(r.atomic_energies, scale_by * scales * shifts, rtol=1e-6)
    assert r.energy == pytest.approx(scale_by * float((scales * shifts).sum()), rel=1e-6)
    assert np.all(r.forces == 0) and len(set(np.round(r.atomic_energies, 6))) == len(symbols)


def _torchscript(path: Path, extra: dict[str, str]) -> Path:
    import torch

    class M(torch.nn.Module):
        def forward(self, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return x

    torch.jit.save(torch.jit.script(M()), str(path), _extra_files=extra)
    return path


def test_other_files_are_refused_with_the_file_named(tmp_path):
    import torch

    cases = {}
    (tmp_path / "text.pt").write_text("not a model\n")
    cases["text.pt"] = "not a TorchScript archive"
    torch.save({"w": torch.zeros(2)}, tmp_path / "best_model.pth")
    cases["best_model.pth"] = "deploy it first: nequip-deploy build"
    _torchscript(tmp_path / "plain.pt", {})
    cases["plain.pt"] = "without nequip metadata"
    _torchscript(
        tmp_path / "new.pth", {"nequip_version": "0.8.1", "r_max": "5.0", "type_names": "H"}
    )
    cases["new.pth"] = "a TorchScript file of nequip 0.8.1"
    _torchscript(tmp_path / "nomax.pth", {"nequip_version": "0.6.1", "type_names": "H"})
    cases["nomax.pth"] = "without r_max metadata"
    raw = MODEL.read_bytes()
    (tmp_path / "cut.pt").write_bytes(raw[: len(raw) // 2])
    cases["cut.pt"] = "not a TorchScript archive"
    for name, msg in cases.items():
        with pytest.raises(LegacyModelError, match=msg) as info:
            load_potential(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_potential(tmp_path / "missing.pt")
    assert MODEL.read_bytes() == raw  # input never modified
    assert zipfile.is_zipfile(MODEL)
