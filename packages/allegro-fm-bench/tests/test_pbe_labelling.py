"""The PBE-level labelling calculator (SevenNet-0, the PBE stand-in of the mini recipe) against SevenNet's own ASE
calculator on one frame: the wrapper only fixes torch's default dtype around loading, so the numbers must be
identical to float32 round-off."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sevenn")


def test_pbe_calculator_is_sevennets_own_calculator_under_a_float64_default():
    import torch
    from allegro_fm_bench.labelling import pbe_calculator
    from allegro_fm_bench.structures import tobermorite_11a
    from sevenn.calculator import SevenNetCalculator

    frame = tobermorite_11a()
    frame.rattle(0.03, seed=2)
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(
            torch.float32
        )  # SevenNet's own calculator, built as SevenNet expects
        own = frame.copy()
        own.calc = SevenNetCalculator("7net-0", device="cpu")
        torch.set_default_dtype(torch.float64)  # what loading a nequip model does to the process
        ours = frame.copy()
        ours.calc = pbe_calculator()
        assert torch.get_default_dtype() == torch.float64  # the wrapper restored it after loading
        # both evaluate under the float64 default a nequip model leaves behind
        e_own, f_own, s_own = own.get_potential_energy(), own.get_forces(), own.get_stress()
        e, f, s = ours.get_potential_energy(), ours.get_forces(), ours.get_stress()
    finally:
        torch.set_default_dtype(previous)
    assert e == pytest.approx(e_own, abs=1e-6)
    np.testing.assert_allclose(f, f_own, rtol=1e-6, atol=1e-5)  # float32 scatter sums: round-off
    np.testing.assert_allclose(s, s_own, atol=1e-8)
    # PBE-level energies of a hydrated calcium silicate: about -7 eV/atom, not a Hartree or a kJ/mol scale
    assert -9.0 < e_own / len(frame) < -5.0
