"""Loss/metric terms for mixed datasets, where some frames have no stress (or forces) label."""

from __future__ import annotations

import torch
from nequip.data import AtomicDataDict
from nequip.data.modifier import BaseModifier
from nequip.train import RootMeanSquaredError


class LabelledRMSE(RootMeanSquaredError):
    """RMSE over the labelled entries only; 0 (and no gradient) when a batch has no label at all.

    nequip's RMSE returns NaN for a batch without labels (0/0), which turns the weighted loss into NaN
    whenever a batch holds only molecular (stress-free) frames, the normal case for fused datasets.
    """

    def compute(self) -> torch.Tensor:
        if int(self.count) == 0:
            return torch.zeros((), dtype=self.sum.dtype, device=self.sum.device)
        return torch.sqrt(self.sum.div(self.count))


class SpeciesWeighted(BaseModifier):
    """A per-atom field (forces, eV/A) times sqrt(w) of each atom's type, in prediction and label alike: its mean
    squared error is then the per-species weighted one (an atom of weight w counts w times; the mean stays over atoms).

    ``weights``: one per type, in the model's type order (``training.species_weight_list``).
    """

    def __init__(self, field: str, weights: list[float]) -> None:
        super().__init__(field)
        self._root_w = torch.as_tensor(weights, dtype=torch.float64).sqrt()

    def _func(self, data: AtomicDataDict.Type) -> torch.Tensor:
        x = data[self.field]
        w = self._root_w.to(device=x.device, dtype=x.dtype)[
            data[AtomicDataDict.ATOM_TYPE_KEY].view(-1)
        ]
        return x * w.view(-1, *([1] * (x.dim() - 1)))

    def __str__(self) -> str:
        return "species_weighted_" + super().__str__()
