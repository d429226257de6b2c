"""The plain-PyTorch port of nequip 0.6.1 / Allegro 0.3.0 deployed files (``legacy_port.py``) and its compiled file.

Oracles: the TorchScript original (the file's own code) and nequip 0.6.1's NequIPCalculator (reference.json, made by
scripts/legacy_fixture). The fixtures are float32 models, so agreement is to float32 round-off: energies 1e-6
relative, forces 1e-5 eV/A, stress 2e-7 eV/A^3 (see below); against nequip 0.6.1's calculator (another
neighbour list, another summation order) 1e-5 relative energies, 3e-6 of the largest force, 1e-6 eV/A^3.
The FM256-size fixture (780 k parameters, 89 elements) is made by ``make_legacy_fixture.sh --fm256`` into
runs/legacy-fm256 (not shipped); its tests run when that file is there and matches reference-fm256.json's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import ase.io
import numpy as np
import pytest
from allegro_fm_model import AllegroFMCalculator, LegacyAllegroPotential
from allegro_fm_model.edges import periodic_edges
from allegro_fm_model.legacy_port import LegacyPortError, PortedLegacyPotential, port_legacy

DATA = Path(__file__).parent / "data" / "legacy"
MODEL = DATA / "legacy-allegro-0.3.0.pth"
FM256 = Path(__file__).resolve().parents[3] / "runs" / "legacy-fm256" / "legacy-fm256.pth"


def _fm256() -> Path:
    ref = json.loads((DATA / "reference-fm256.json").read_text())
    if not FM256.exists():
        pytest.skip(
            f"{FM256} not made (bash packages/allegro-fm-model/scripts/legacy_fixture/make_legacy_fixture.sh --fm256)"
        )
    if hashlib.sha256(FM256.read_bytes()).hexdigest() != ref["model_sha256"]:
        pytest.skip(f"{FM256} is not the file reference-fm256.json was made with (remade since?)")
    return FM256


def _compare(model: Path, reference_json: Path) -> None:
    """Port vs TorchScript original (the issue's bounds) and vs nequip 0.6.1's calculator on every structure."""
    original, port = LegacyAllegroPotential(model), PortedLegacyPotential(model)
    ref = json.loads(reference_json.read_text())["results"]
    for atoms, r in zip(ase.io.read(DATA / "structures.extxyz", ":"), ref):
        a, b = atoms.copy(), atoms.copy()
        a.calc, b.calc = AllegroFMCalculator(original), AllegroFMCalculator(port)
        ea, eb = a.get_potential_energy(), b.get_potential_energy()
        fa, fb = a.get_forces(), b.get_forces()
        print(
            f"{model.name} {r['name']}: port - original dE/E {abs(eb - ea) / abs(ea):.1e}, "
            f"dF {np.abs(fb - fa).max():.1e} eV/A; port - nequip 0.6.1 dE {eb - r['energy']:.1e} eV"
        )
        assert abs(eb - ea) <= 1e-6 * abs(ea), r["name"]
        np.testing.assert_allclose(fb, fa, rtol=0, atol=1e-5)
        np.testing.assert_allclose(
            b.get_potential_energies(), a.get_potential_energies(), rtol=0, atol=1e-5
        )
        assert eb == pytest.approx(r["energy"], rel=1e-5)
        # 3e-6 of the largest force: float32 forces of 12 eV/A summed in another order (FM256: 2.6e-5 eV/A)
        np.testing.assert_allclose(fb, r["forces"], rtol=0, atol=3e-6 * np.abs(fb).max())
        np.testing.assert_allclose(
            b.get_potential_energies(), r["energies"], rtol=0, atol=2e-5 * max(1, abs(eb) / len(b))
        )
        if atoms.pbc.all():
            # 3e-7 eV/A^3 (0.05 MPa), not 1e-7: on the 55 A^3 cell float32 virials differ by ~5e-6 eV between
            # summation orders (the original itself is 6.5e-7 eV/A^3 from nequip 0.6.1's calculator on FM256); the
            # TorchScript original's own order changes after its profiling runs: FM256 measured 1.5e-7 in a fresh
            # process and 2.3e-7 after the small fixture's test in the same process (2026-12-06)
            np.testing.assert_allclose(b.get_stress(), a.get_stress(), rtol=0, atol=3e-7)
            np.testing.assert_allclose(b.get_stress(), r["stress"], rtol=0, atol=1e-6)


def test_port_equals_torchscript_and_nequip_061():
    """Small fixture: a 5-atom triclinic cell (edges reach several images), calcite, an open molecule; each holds
    only some of the file's five elements."""
    _compare(MODEL, DATA / "reference.json")


def test_fm256_size_port_equals_torchscript_and_nequip_061():
    """The published FM256's size: 64 tensor features, latent MLPs of 256, 89 elements."""
    _compare(_fm256(), DATA / "reference-fm256.json")


def test_port_forces_are_minus_gradient_and_invariant():
    """In float64 (the port cast up) forces are -dE/dx by central differences, the virial is the strain derivative,
    and the energy is invariant under rotation and translation: the port's own force and virial assembly."""
    import torch
    from allegro_fm_model.compiled import fold_copies, ghost_graph

    port = port_legacy(MODEL).double()
    port.model_dtype = port.default_dtype = torch.float64
    a = ase.io.read(DATA / "structures.extxyz", 1)
    types = np.array([port.species.index(s) for s in a.get_chemical_symbols()])

    def run(atoms):
        ei, sh = periodic_edges(atoms.positions, np.array(atoms.cell), atoms.pbc, port.cutoff)
        pos, typ, e2, copy_of = ghost_graph(
            atoms.positions, types, ei, len(atoms), sh, port.cutoff, min_edges=1
        )
        o = port(
            {
                "pos": torch.tensor(pos),
                "edge_index": torch.tensor(e2),
                "atom_types": torch.tensor(typ),
            }
        )
        e = float(o["atomic_energy"][: len(atoms)].detach().sum())
        f = fold_copies(o["forces"].detach().numpy(), copy_of, len(atoms))
        return e, f, o["virial"].detach().numpy().reshape(3, 3)

    e0, f0, w0 = run(a)
    h = 1e-5
    for i, k in [(0, 0), (7, 2), (23, 1)]:
        p, m = a.copy(), a.copy()
        p.positions[i, k] += h
        m.positions[i, k] -= h
        assert -(run(p)[0] - run(m)[0]) / (2 * h) == pytest.approx(f0[i, k], abs=1e-6)
    eps = 1e-5
    for x, y in [(0, 0), (2, 2), (0, 2)]:
        d = np.zeros((3, 3))
        d[x, y] = d[y, x] = eps / (1 if x == y else 2)
        p, m = a.copy(), a.copy()
        p.set_cell(a.cell @ (np.eye(3) + d), scale_atoms=True)
        m.set_cell(a.cell @ (np.eye(3) - d), scale_atoms=True)
        de = (run(p)[0] - run(m)[0]) / (2 * eps)  # dE/d(strain) = -W
        assert -w0[x, y] == pytest.approx(de, abs=1e-6)
    rot = a.copy()
    rot.rotate(37, "x", rotate_cell=True)
    rot.rotate(-52, "z", rotate_cell=True)
    rot.translate([0.3, -1.1, 2.0])
    assert run(rot)[0] == pytest.approx(e0, abs=1e-8)  # float64 round-off of a 222 eV sum


def test_factored_first_tensor_product_equals_the_dense_one():
    """Layer 0's product with the edge weights contracted first (the default, faster compiled) equals the original's
    dense outer product to float32 round-off, on the FM256-size file if made, else the small fixture."""
    import torch
    from allegro_fm_model.compiled import ghost_graph

    model = FM256 if FM256.exists() else MODEL
    port = port_legacy(model)
    a = ase.io.read(DATA / "structures.extxyz", 1)
    types = np.array([port.species.index(s) for s in a.get_chemical_symbols()])
    ei, sh = periodic_edges(a.positions, np.array(a.cell), a.pbc, port.cutoff)
    pos, typ, e2, _ = ghost_graph(a.positions, types, ei, len(a), sh, port.cutoff, min_edges=1)
    data = {
        "pos": torch.tensor(pos),
        "edge_index": torch.tensor(e2),
        "atom_types": torch.tensor(typ),
    }
    out = {}
    for factored in (True, False):
        port.factor_first_tp = factored
        o = port(data)
        out[factored] = (o["atomic_energy"].detach().numpy(), o["forces"].detach().numpy())
    print(
        f"{model.name}: factored - dense per-atom energy {np.abs(out[True][0] - out[False][0]).max():.1e} eV, "
        f"forces {np.abs(out[True][1] - out[False][1]).max():.1e} eV/A"
    )
    np.testing.assert_allclose(out[True][0], out[False][0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(out[True][1], out[False][1], rtol=0, atol=1e-5)
    assert np.abs(out[True][1]).max() > 1.0  # real forces


def _with_config(tmp_path: Path, edit) -> Path:
    """A copy of the fixture whose stored training config is edited by ``edit(text) -> text``."""
    out = tmp_path / "edited.pth"
    with zipfile.ZipFile(MODEL) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("/extra/config"):
                data = edit(data.decode()).encode()
            dst.writestr(item, data)
    return out


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda t: t + "\ntensors_mixing_mode: uuup\n", "tensors_mixing_mode"),
        (
            lambda t: t.replace("- RescaleEnergyEtc", "- RescaleEnergyEtc\n- allegro.model.ZBL"),
            "model_builders",
        ),
        (
            lambda t: t.replace(
                "\nlatent_mlp_nonlinearity: silu", "\nlatent_mlp_nonlinearity: tanh"
            ),
            "latent_mlp_nonlinearity",
        ),
        (lambda t: t + "\nuse_original_normalized_basis: true\n", "use_original_normalized_basis"),
    ],
)
def test_unsupported_options_are_refused_by_key(tmp_path, edit, key):
    """An option the port does not implement is refused with its key named, never silently mis-modelled; the
    MD plug-in then runs the file as TorchScript (the original is exact) instead of failing the run."""
    from allegro_fm_model.plugin import md_potential

    bad = _with_config(tmp_path, edit)
    with pytest.raises(LegacyPortError, match=key):
        port_legacy(bad)

    class Spec:
        model, models, options = str(bad), [], {}

    pot = md_potential(Spec(), None, "cpu")
    assert type(pot) is LegacyAllegroPotential


def test_compiled_port_runs_everywhere_the_original_does():
    """``compiled_on_first_use`` of a nequip 0.6 file (what allegro-fm-md does with it by default) compiles the port,
    checks it against the TorchScript original, records the original's provenance, and ``load_potential`` of the file
    runs in the ASE calculator with nequip 0.6.1's results (the engine: tests/test_legacy_in_engine.py)."""
    from allegro_fm_model import CompiledAllegroPotential, load_potential
    from allegro_fm_model.plugin import compiled_on_first_use
    from nequip.model.inference_models.compiled import load_compiled_model

    path = compiled_on_first_use(MODEL, "cpu", progress=False)
    pot = load_potential(path)
    assert isinstance(pot, CompiledAllegroPotential)
    assert pot.species == ("O", "Ca", "H", "Si", "C") and pot.cutoff == 5.2
    meta = load_compiled_model(str(path), "cpu")[1]
    assert meta["legacy_source"] == MODEL.name
    assert meta["legacy_sha256"] == hashlib.sha256(MODEL.read_bytes()).hexdigest()
    assert meta["legacy_nequip_version"] == "0.6.1" and meta["afm_positions_dtype"] == "float64"
    # what LAMMPS pair_allegro (pair_nequip_allegro, AOTInductor) reads from a .nequip.pt2
    for key in ("nequip_aoti_inputs", "nequip_aoti_outputs", "allow_tf32", "r_max", "num_types"):
        assert meta[key] != "", key
    assert meta["type_names"] == ["O", "Ca", "H", "Si", "C"] and meta["num_types"] == "5"
    ref = json.loads((DATA / "reference.json").read_text())["results"]
    for atoms, r in zip(ase.io.read(DATA / "structures.extxyz", ":"), ref):
        atoms.calc = AllegroFMCalculator(pot)
        assert atoms.get_potential_energy() == pytest.approx(r["energy"], rel=1e-5)
        np.testing.assert_allclose(atoms.get_forces(), r["forces"], rtol=0, atol=2e-5)
