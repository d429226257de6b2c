"""Training callbacks the generated nequip config adds.

``WeightsDigest``: at the end of training every process writes ``weights-rank<R>.json`` (epoch, optimizer step and
the SHA-256 of its parameters' bytes) into the run folder, so a data-parallel (DDP) run shows that all ranks ended
with the same weights; a mismatch is logged as an error naming the ranks.
``EpochLine``: one plain line per epoch (losses, seconds) when Lightning's bar is off (stderr not a terminal).
``LevelOfTheory``: records the training data's level of theory in every checkpoint (``provenance.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import lightning

from .provenance import LEVEL_KEY, UNKNOWN_LEVEL

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
        (self.dirpath / f"weights-rank{rank}.json").write_text(
            json.dumps(
                {
                    "rank": rank,
                    "world_size": int(trainer.world_size),
                    "epoch": int(trainer.current_epoch),
                    "step": int(trainer.global_step),
                    "sha256": h.hexdigest(),
                }
            )
        )


class LevelOfTheory(lightning.pytorch.callbacks.Callback):
    """Write ``level`` (the training data's level of theory) into every checkpoint Lightning saves."""

    def __init__(self, level: str):
        self.level = level or UNKNOWN_LEVEL

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[LEVEL_KEY] = self.level


class EpochLine(lightning.pytorch.callbacks.Callback):
    """One line per validation epoch on stderr (epoch, the logged loss terms, seconds): a log file's progress."""

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith("weighted_sum")}
        terms = ", ".join(f"{k} {v:.5g}" for k, v in sorted(m.items()))
        dt = time.perf_counter() - getattr(self, "_t0", time.perf_counter())
        print(
            f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {terms} ({dt:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
