"""allegro_fm_bench: the paper's results as tables and plots, and the Allegro-FM-mini data pipeline.

What exists (issues #5, #6):

- ``structures``: builders from published crystallographic facts (tobermorite 11 A hydrogenated,
  portlandite, calcite, alpha-quartz, water boxes, small H/C/O molecules, the H2CO3 -> H2O + CO2 band)
- ``labelling``: the two levels of theory of the mini dataset (SevenNet-0 for periodic PBE;
  PySCF wB97M-D3(BJ)/def2-SVP for molecules)
- ``minidata``: ``allegro-fm-bench make-mini-data``, the resumable generator of the mini dataset
- ``experiments``: the paper's eight experiments (params, eos, gr, neb, tensile, carbonation, transition1x, scaling),
  ``allegro-fm-bench run``, and ``report``: report.md with provenance, plots
"""

from .__about__ import __version__
from .structures import (
    calcite,
    carbonic_acid_path,
    portlandite,
    quartz,
    small_molecules,
    tobermorite_11a,
    water_box,
)

__all__ = [
    "__version__",
    "tobermorite_11a",
    "portlandite",
    "calcite",
    "quartz",
    "water_box",
    "small_molecules",
    "carbonic_acid_path",
]
