"""Training callbacks the generated nequip config adds.

``WeightsDigest``: at the end of training every process writes ``weights-rank<R>.json`` (epoch, optimizer step and
the SHA-256 of its parameters' bytes) into the run folder, so a data-parallel (DDP) run shows that all ranks ended
with the same weights; a mismatch is logged as an error naming the ranks.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import lightning

log = logging.getLogger("allegro_fm_model")


class WeightsDigest(lightning.pytorch.callbacks.Callback):
    """Write each rank's parameter digest at the end of training (see the module docstring)."""

    def __init__(self, dirpath: str):
        self.dirpath = Path(dirpath)

    def on_train_end(self, trainer, pl_module) -> None:
        h = hashlib.sha256()
        for name, p in sorted(pl_module.named_parameters()):
            h.update(name.encode())
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
        rank = int(trainer.global_rank)
        (self.dirpath / f"weights-rank{rank}.json").write_text(json.dumps(
            {"rank": rank, "world_size": int(trainer.world_size), "epoch": int(trainer.current_epoch),
             "step": int(trainer.global_step), "sha256": h.hexdigest()}))
