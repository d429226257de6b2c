"""allegro_fm_model: the Allegro-FM model family on nequip + nequip-allegro.

Public façade:

- ``Preset``, ``FM64``, ``FM256``, ``FM512``, ``MINI``, ``PRESETS``, ``get_preset``, ``tiny_preset``: the paper's sizes
- ``build_model``, ``count_parameters``: nequip-allegro models of a preset
- ``AllegroPotential``, ``CompiledAllegroPotential``, ``LegacyAllegroPotential``, ``PotentialResult``: the call an MD
  engine makes (local + ghost atoms, local-centred edges): eager, AOTInductor-compiled, or a nequip 0.6.x deployed
  TorchScript file such as the published ``afm256_01_HL.pt`` (``read_legacy_metadata``, ``LegacyModelError``)
- ``AllegroFMCalculator``, ``periodic_edges``: ASE calculator (energy eV, forces eV/A, stress eV/A^3, per-atom
  energies and stresses, a committee's per-atom force deviation)
- ``CommitteePotential``, ``load_committee``: several models as one (weighted mean, per-atom force deviation);
  ``HeadsPotential``, ``load_heads_potential``, ``fit_heads``: a shallow ensemble (readout heads on one backbone;
  ``allegro-fm heads``)
- ``load_potential`` (any model file or shipped name), ``resolve_model``, ``builtin_model_path``, ``BUILTIN_MODELS``;
  ``package_model``, ``compile_model``, ``export_lammps_mliap``: deployable files;
  ``lammps_mliap_input``, ``lammps_environment``: running an ML-IAP file in a LAMMPS build;
  ``pair_allegro_single_point``: one evaluation through LAMMPS's ``pair_style allegro``
- training, fine-tuning and evaluation: ``allegro_fm_model.training`` / ``evaluate`` and the ``allegro-fm`` CLI
"""

from .__about__ import __version__
from .calculator import AllegroFMCalculator, periodic_edges
from .committee import CommitteePotential
from .compiled import CompiledAllegroPotential
from .export import check_same_predictions, compile_model, package_model
from .heads import HeadsPotential, fit_heads, load_heads_potential
from .lammps import (
    LammpsPoint,
    export_lammps_mliap,
    lammps_environment,
    lammps_mliap_input,
    pair_allegro_single_point,
)
from .legacy import LegacyAllegroPotential, LegacyModelError, read_legacy_metadata
from .loading import (
    BUILTIN_MODELS,
    builtin_model_path,
    load_committee,
    load_potential,
    resolve_model,
)
from .model import build_model, count_parameters
from .potential import AllegroPotential, PotentialResult
from .presets import FM64, FM256, FM512, MINI, PRESETS, Preset, get_preset, tiny_preset

__all__ = [
    "__version__",
    "AllegroFMCalculator",
    "periodic_edges",
    "build_model",
    "count_parameters",
    "AllegroPotential",
    "CompiledAllegroPotential",
    "PotentialResult",
    "load_potential",
    "FM64",
    "FM256",
    "FM512",
    "PRESETS",
    "Preset",
    "get_preset",
    "tiny_preset",
    "MINI",
    "builtin_model_path",
    "package_model",
    "compile_model",
    "export_lammps_mliap",
    "lammps_mliap_input",
    "lammps_environment",
    "pair_allegro_single_point",
    "LammpsPoint",
    "LegacyAllegroPotential",
    "LegacyModelError",
    "read_legacy_metadata",
    "BUILTIN_MODELS",
    "resolve_model",
    "check_same_predictions",
    "CommitteePotential",
    "load_committee",
    "HeadsPotential",
    "load_heads_potential",
    "fit_heads",
]
