"""Helpers shared by tea-align's tests (a uniquely named module: conftest names clash across packages)."""

from __future__ import annotations

from tea_align import synthetic


def specs(paths):
    """Input strings declaring the synthetic levels of the demo files."""
    return [
        f"{paths['periodic']},level={synthetic.LEVEL_S}",
        f"{paths['molecules']},level={synthetic.LEVEL_T}",
    ]
