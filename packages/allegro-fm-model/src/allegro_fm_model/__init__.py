"""allegro_fm_model: the Allegro-FM model family on nequip + nequip-allegro.

Public façade (in progress, issue #3):

- ``Preset``, ``FM64``, ``FM256``, ``FM512``, ``PRESETS``, ``get_preset``, ``tiny_preset``: the paper's sizes
- ``build_model``, ``count_parameters``: nequip-allegro models of a preset
- ``AllegroPotential``, ``PotentialResult``: the call an MD engine makes (local + ghost atoms, local-centred edges)
- ``AllegroFMCalculator``: ASE calculator (energy eV, forces eV/A, stress eV/A^3)

Not yet implemented: the tea-align dataset for nequip, training/fine-tuning, export, the CLI.
"""

from .__about__ import __version__
from .calculator import AllegroFMCalculator, periodic_edges
from .export import builtin_model_path, load_potential, package_model
from .model import build_model, count_parameters
from .potential import AllegroPotential, PotentialResult
from .presets import FM64, FM256, FM512, MINI, PRESETS, Preset, get_preset, tiny_preset

__all__ = ["__version__", "AllegroFMCalculator", "periodic_edges", "build_model", "count_parameters", "AllegroPotential",
           "PotentialResult", "load_potential", "FM64", "FM256", "FM512", "PRESETS", "Preset", "get_preset", "tiny_preset", "MINI",
           "builtin_model_path", "package_model"]
