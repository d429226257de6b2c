"""allegro_fm_model: the Allegro-FM model family on nequip + nequip-allegro.

Public façade:

- ``Preset``, ``FM64``, ``FM256``, ``FM512``, ``MINI``, ``PRESETS``, ``get_preset``, ``tiny_preset``: the paper's sizes
- ``build_model``, ``count_parameters``: nequip-allegro models of a preset
- ``AllegroPotential``, ``CompiledAllegroPotential``, ``PotentialResult``: the call an MD engine makes (local + ghost
  atoms, local-centred edges), eager or AOTInductor-compiled
- ``AllegroFMCalculator``, ``periodic_edges``: ASE calculator (energy eV, forces eV/A, stress eV/A^3)
- ``load_potential``, ``builtin_model_path``, ``package_model``, ``compile_model``, ``export_lammps_mliap``: files;
  ``lammps_mliap_input``, ``lammps_environment``: running an ML-IAP file in a LAMMPS build
- training, fine-tuning and evaluation: ``allegro_fm_model.training`` / ``evaluate`` and the ``allegro-fm`` CLI
"""

from .__about__ import __version__
from .calculator import AllegroFMCalculator, periodic_edges
from .compiled import CompiledAllegroPotential
from .export import builtin_model_path, compile_model, export_lammps_mliap, lammps_environment, lammps_mliap_input, load_potential, package_model
from .model import build_model, count_parameters
from .potential import AllegroPotential, PotentialResult
from .presets import FM64, FM256, FM512, MINI, PRESETS, Preset, get_preset, tiny_preset

__all__ = ["__version__", "AllegroFMCalculator", "periodic_edges", "build_model", "count_parameters", "AllegroPotential",
           "CompiledAllegroPotential", "PotentialResult", "load_potential", "FM64", "FM256", "FM512", "PRESETS", "Preset",
           "get_preset", "tiny_preset", "MINI", "builtin_model_path", "package_model", "compile_model", "export_lammps_mliap",
           "lammps_mliap_input", "lammps_environment"]
