"""Shared pieces of the allegro-fm-md tests: the Lennard-Jones argon run file most engine tests run."""

from __future__ import annotations

#: the [potential] table of LJ argon (epsilon eV, sigma A, cutoff A)
LJ_ARGON = """[potential]
kind = "lj"
epsilon = 0.0104
sigma = 3.4
cutoff = 6.5
"""


def argon_toml(run: str, output: str, system: str = 'structure = "ar.extxyz"') -> str:
    """A run file of LJ argon: ``system`` (the [system] table's lines), ``run`` and ``output`` (the [run] and [output]
    tables' lines, sub-tables may follow)."""
    return f"[system]\n{system}\n{LJ_ARGON}[run]\n{run.strip()}\n[output]\n{output.strip()}\n"
