"""Shared fixtures of the bench tests."""

import numpy as np
import pytest
from ase.calculators.calculator import Calculator, all_changes


class CurvedSurface(Calculator):
    """One atom in V = s [(1 - x^2)^2 + 5 (y - x^2)^2] + z^2 (eV, Angstrom; s = 0.5 eV): minima (+-1, 1, 0), the
    minimum-energy path bends along y = x^2 (the straight line between the minima crosses 3 eV), saddle (0, 0, 0) with
    barrier s."""

    implemented_properties = ["energy", "forces"]
    s = 0.5

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        s = self.s
        x, y, z = self.atoms.positions[0]
        u = y - x * x
        self.results["energy"] = s * ((1 - x * x) ** 2 + 5 * u * u) + z * z
        self.results["forces"] = -np.array(
            [[s * (-4 * x * (1 - x * x) - 20 * x * u), s * 10 * u, 2 * z]]
        )


@pytest.fixture
def curved_surface():
    """A CurvedSurface calculator (a NEB oracle: exact barrier 0.5 eV on a curved path)."""
    return CurvedSurface()
