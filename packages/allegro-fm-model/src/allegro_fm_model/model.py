"""Building Allegro-FM models through nequip-allegro, and counting their parameters."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tea_align import ALLEGRO_FM_ELEMENTS

from .presets import Preset, get_preset


def ensure_nequip_state() -> None:
    """Initialise nequip's global state (required before building models) once."""
    from nequip.utils.global_state import (
        global_state_initialized,
        set_global_state,
    )  # lazy: nequip imports torch

    if not global_state_initialized():
        set_global_state()


def build_model(
    preset: str | Preset = "FM64",
    type_names: Sequence[str] = ALLEGRO_FM_ELEMENTS,
    *,
    seed: int = 0,
    dtype: str = "float32",
    per_type_energy_shifts: Mapping[str, float] | None = None,
    avg_num_neighbors: float | None = None,
    **overrides: Any,
):
    """An Allegro-FM model (``nequip`` GraphModel) of ``preset`` over ``type_names``.

    ``per_type_energy_shifts`` (eV/atom per element, e.g. tea-align's ``Alignment.reference_energies``)
    set the per-atom energy offsets; elements not given get 0. ``overrides`` go to AllegroModel.
    """
    from allegro.model import AllegroModel  # lazy: nequip-allegro imports torch

    ensure_nequip_state()
    p = get_preset(preset)
    kw = p.nequip_kwargs(type_names, seed=seed, model_dtype=dtype, **overrides)
    if per_type_energy_shifts is not None:
        kw["per_type_energy_shifts"] = {
            t: float(per_type_energy_shifts.get(t, 0.0)) for t in type_names
        }
    if avg_num_neighbors is not None:
        kw["avg_num_neighbors"] = float(avg_num_neighbors)
    logging.getLogger("nequip").setLevel(logging.WARNING)
    return AllegroModel(**kw)


def count_parameters(model) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
