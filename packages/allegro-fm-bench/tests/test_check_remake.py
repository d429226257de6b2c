"""scripts/check_remake.py's verdict (the remake's 5 % check of issue 16): which rows are over the tolerance. (Its
evaluation rows are ``allegro_fm_model.evaluate``'s, tested there; its full run is the remake's.)"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_remake.py"


def load():
    spec = importlib.util.spec_from_file_location("check_remake", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rows_over_the_tolerance_missing_rows_and_nan_fracture_are_flagged():
    compare = load().compare
    shipped = {
        "held out, all: force RMSE (meV/A)": 396.0,
        "held out, ice-Ih: force RMSE (meV/A)": 181.0,
        "bench tensile 1e+12 /s: fracture_strain": 0.249,
        "bench tensile 1e+11 /s: fracture_strain": math.nan,
        "bench EOS: B0_GPa": 61.1,
        "offset": 0.0,
    }
    remake = {
        "held out, all: force RMSE (meV/A)": 411.0,  # +3.8 %: within 5 %
        "held out, ice-Ih: force RMSE (meV/A)": 191.0,  # +5.5 %: over
        "bench tensile 1e+12 /s: fracture_strain": math.nan,  # broke in the shipped run only: over
        "bench tensile 1e+11 /s: fracture_strain": math.nan,  # neither broke: equal
        "offset": 1e-12,
    }  # absolute below the floor
    lines, bad = compare(shipped, remake, 0.05)
    assert bad == [
        "held out, ice-Ih: force RMSE (meV/A)",
        "bench tensile 1e+12 /s: fracture_strain",
        "bench EOS: B0_GPa",
    ]
    assert "| held out, all: force RMSE (meV/A) | 396 | 411 | 3.8 % |" in lines
    assert "| bench EOS: B0_GPa | 61.1 | missing | - |" in lines
    assert lines[-1].startswith("3 of 6 within tolerance; over: ")
    assert (
        compare(shipped, dict(shipped), 0.0)[1] == []
    )  # a model against itself: nothing over, NaN included
