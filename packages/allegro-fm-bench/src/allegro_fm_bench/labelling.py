"""Labelling calculators for generated data: two genuinely different levels of theory (ASE calculators).

- PBE level, periodic: SevenNet-0 (``sevenn`` wheel, MIT licence; a GNN trained on MPtrj, i.e. on
  VASP PBE/PBE+U PAW labels) stands in for periodic PBE, which does not fit on 2 CPU cores at these sizes.
- wB97M-D3(BJ), molecular: PySCF all-electron Kohn-Sham DFT with the wB97M functional (VV10 switched
  off) plus Grimme's D3 with Becke-Johnson damping from the ``dftd3`` package (wB97M parameters of
  Najibi & Goerigk, JCTC 14, 5725 (2018)), def2-SVP basis (def2-TZVPPD in OFF23; SVP is what 2 cores
  afford), closed shell or, for isolated atoms, unrestricted with the ground-state spin.

Hand-written: the PySCF + D3 ASE calculator (ASE ships none that adds D3 to PySCF).
"""

from __future__ import annotations

import warnings

import numpy as np
from ase.calculators.calculator import Calculator, all_changes
from ase.units import Bohr, Hartree

PBE_LEVEL = "PBE~SevenNet-0"
WB97M_LEVEL = "wB97M-D3(BJ)/def2-SVP"
_GROUND_SPIN = {"H": 1, "C": 2, "N": 3, "O": 2, "Ca": 0, "Si": 2}  # 2S of the isolated atoms


def pbe_calculator(device: str = "cpu"):
    """SevenNet-0 as an ASE calculator (energy eV, forces eV/A, stress). Built under torch's float32 default: a nequip
    model loaded earlier in the process sets the default to float64, and SevenNet's checkpoint loading then fails."""
    import torch  # lazy: optional [datagen] extra
    from sevenn.calculator import SevenNetCalculator

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return SevenNetCalculator("7net-0", device=device)
    finally:
        torch.set_default_dtype(default)


class SCFNotConverged(RuntimeError):
    """PySCF's SCF (and its second-order fallback) did not converge for a geometry."""


class PySCFCalculator(Calculator):
    """Molecular Kohn-Sham DFT energy (eV) and forces (eV/A) from PySCF, all-electron, with optional D3(BJ) from
    ``dftd3``; a cell, if any, is ignored. ``xc``: a libxc name ("wb97m_v" with ``nlc=False`` is wB97M without
    VV10, "pbe"); ``d3``: the dftd3 method name for rational damping ("wb97m", "pbe") or None. Forces are computed
    only when asked for.

    One calculator is often shared by many structures (a NEB band, whose optimiser asks for the same images more
    than once per step): converged SCF solutions and results are remembered per geometry (the last ``cache_size``;
    forces asked for after an energy reuse the SCF), and each new SCF starts from the converged density of the
    nearest remembered geometry of the same molecule (fewer SCF cycles; the result is the same to ``conv_tol``)."""

    implemented_properties = ["energy", "forces"]

    def __init__(
        self,
        xc: str = "pbe",
        basis: str = "def2-svp",
        d3: str | None = None,
        nlc: bool = True,
        charge: int = 0,
        spin: int | None = None,
        grid_level: int = 3,
        max_memory_mb: int = 4000,
        cache_size: int = 32,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.xc, self.d3, self.nlc = xc, d3, nlc
        self.basis, self.charge, self.spin, self.grid_level, self.max_memory_mb = (
            basis,
            charge,
            spin,
            grid_level,
            max_memory_mb,
        )
        self.cache_size = cache_size
        self._memory: dict[
            tuple, dict
        ] = {}  # (numbers, positions bytes) -> {"results", "positions", "mf"}
        self.scf_runs = 0  # SCF solutions actually computed (the rest came from memory)

    def _guess(self, key, positions):
        """Converged density matrix of the nearest remembered geometry of the same atoms (max shift < 0.5 A)."""
        best, mf = 0.5, None
        for (numbers, _), m in self._memory.items():
            if numbers == key[0]:
                d = float(np.abs(m["positions"] - positions).max())
                if d < best:
                    best, mf = d, m["mf"]
        return None if mf is None else mf.make_rdm1()

    def _scf(self, key):
        """The converged PySCF mean-field object of ``self.atoms`` (remembered under ``key``)."""
        from pyscf import dft, gto  # lazy: optional [datagen] extra

        a = self.atoms
        spin = self.spin
        if spin is None:
            spin = _GROUND_SPIN.get(a.get_chemical_symbols()[0], 0) if len(a) == 1 else 0
        mol = gto.M(
            atom=[(s, tuple(p)) for s, p in zip(a.get_chemical_symbols(), a.positions)],
            unit="Angstrom",
            basis=self.basis,
            charge=self.charge,
            spin=spin,
            verbose=0,
            max_memory=self.max_memory_mb,
        )
        mf = (dft.UKS if spin else dft.RKS)(mol)
        mf.xc = self.xc
        if not self.nlc:
            mf.nlc = False
        mf.grids.level = self.grid_level
        mf.conv_tol = 1e-9
        mf.kernel(dm0=self._guess(key, a.positions))
        if not mf.converged:
            mf = mf.newton()
            mf.kernel()
        if not mf.converged:
            raise SCFNotConverged(
                f"SCF did not converge for {a.get_chemical_formula()} ({self.xc}/{self.basis})"
            )
        self.scf_runs += 1
        return mf

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        want_f = "forces" in properties
        key = (
            tuple(int(z) for z in a.numbers),
            np.ascontiguousarray(a.positions, dtype=float).tobytes(),
        )
        seen = self._memory.pop(key, None)
        if seen is None:
            seen = {"results": {}, "positions": a.positions.copy(), "mf": self._scf(key)}
        mf = seen["mf"]
        res = seen["results"]
        if "energy" not in res or (want_f and "forces" not in res):
            e = mf.e_tot
            grad = np.asarray(mf.nuc_grad_method().kernel()) if want_f else 0.0
            if self.d3:
                from dftd3.interface import (
                    DispersionModel,
                    RationalDampingParam,
                )  # lazy: optional [datagen] extra

                mol = mf.mol
                d3 = DispersionModel(mol.atom_charges(), mol.atom_coords()).get_dispersion(
                    RationalDampingParam(method=self.d3), grad=want_f
                )
                e = e + d3["energy"]
                if want_f:
                    grad = grad + np.asarray(d3["gradient"])
            res["energy"] = float(e * Hartree)
            if want_f:
                res["forces"] = -grad * Hartree / Bohr
        self.results["energy"] = res["energy"]
        if "forces" in res:
            self.results["forces"] = res["forces"].copy()
        if self.cache_size > 0:
            self._memory[key] = seen  # most recent last
            while len(self._memory) > self.cache_size:
                self._memory.pop(next(iter(self._memory)))


class WB97MD3BJ(PySCFCalculator):
    """Molecular wB97M-D3(BJ) (wB97M without VV10, plus D3(BJ) with wB97M parameters): the OFF23/SPICE level."""

    def __init__(self, basis: str = "def2-svp", **kwargs):
        super().__init__(xc="wb97m_v", basis=basis, d3="wb97m", nlc=False, **kwargs)
