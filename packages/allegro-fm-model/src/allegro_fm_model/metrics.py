"""Loss/metric terms for mixed datasets, where some frames have no stress (or forces) label."""

from __future__ import annotations

import torch
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
