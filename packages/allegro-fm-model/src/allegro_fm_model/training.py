"""Training and fine-tuning through nequip's Lightning workflow, configured from a small TOML file.

``TrainSettings`` holds the paper's defaults (per-atom energy, force and stress RMSE weighted 8:1:1,
Adam, r_max 5.2, FM presets). ``nequip_config`` turns them into the Hydra config nequip-train
expects, written into the run folder (so a run is reproducible and a user never writes Hydra by
hand); ``train`` runs ``nequip-train`` on it and resumes from ``last.ckpt`` when present.
Multi-GPU / multi-node: ``devices``, ``num_nodes`` and ``strategy = "ddp"`` go to Lightning's Trainer.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import tea_align
import yaml
from ase.data import chemical_symbols
from tea_align.files import read_toml, write_text_atomic

from .data import reference_energies
from .evaluate import energy_offsets
from .loading import BUILTIN_MODELS, load_potential, resolve_model
from .presets import get_preset
from .provenance import check_levels, dataset_level
from .replay import check_replay_level


@dataclass(frozen=True)
class TrainSettings:
    """Settings of one training run (defaults: the paper's). Lengths A, energies eV."""

    dataset: str
    run_dir: str = "runs/train"  # in a TOML file: relative to the file
    preset: str = "FM64"
    type_names: tuple[str, ...] = ()  # empty: the elements present in the dataset
    energy_weight: float = 8.0
    force_weight: float = 1.0
    stress_weight: float = 1.0
    learning_rate: float = 1e-3
    lr_schedule: str = "plateau"  # "plateau": halved after lr_patience epochs without a better validation loss (0: never);
    #                               "cosine": annealed from learning_rate to lr_min over max_epochs (a decay phase)
    lr_patience: int = 0
    lr_min: float = 1e-5  # the floor of either schedule
    # per-source weights: (source name or level of theory, k): training frames of that source (tea-align's name=) or
    # level appear k times per epoch (through nequip) or weigh k times in the loss (nequip 0.6 files)
    oversample: tuple[tuple[str, int], ...] = ()
    sam_rho: float = 0.0  # > 0: sharpness-aware minimisation around Adam (Allegro-Legato); 0.05 is SAM's usual radius
    batch_size: int = 4
    max_epochs: int = 100
    val_fraction: float = 0.05
    test_fraction: float = 0.05
    seed: int = 0
    # earlier datasets whose frames open this one (it grew, round by round): each one's frames keep the split they had
    # there; one path, or a list of them from the smallest (each opening the next)
    split_keep: str | tuple[str, ...] = ""
    ema_decay: float = 0.999
    model_dtype: str = "float32"
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    num_workers: int = 0
    init_from: str = ""  # fine-tuning: checkpoint, nequip package (.nequip.zip) or shipped model's name to start from
    freeze: tuple[str, ...] = ()  # fine-tuning: parameter-name prefixes to freeze
    # fine-tuning on data at another level of theory than the starting model's: refit the per-species energy shifts on
    # the training frames first (else such data is refused, naming both levels: provenance.py)
    refit_offsets: bool = False
    # fine-tuning with replay (replay.py, ``allegro-fm make-replay``): a tea-align dataset at the same level of theory as
    # ``dataset`` (else refused, naming both levels), mixed into every epoch; ``replay_fraction``: replay frames per
    # epoch as a fraction of the training frames (a fresh draw each epoch for nequip 0.6 files; a fixed draw through
    # nequip; 0: the replay's held-out frames are only validated on, each epoch: a forgetting curve); ``replay_weight``:
    # their loss weight relative to the new data's (nequip 0.6 files; through nequip an integer repeat count)
    replay: str = ""
    replay_fraction: float = 1.0
    replay_weight: float = 1.0
    # per-species weights of the force loss (TOML table {Ca = 4.0}; an element not named: 1): an atom's squared force
    # error counts w times in the mean over atoms. The validation loss is weighted the same way (the unweighted force
    # RMSE is logged next to it); recorded in the run's config and in a nequip 0.6 file's fine-tuning note
    species_weights: tuple[tuple[str, float], ...] = ()

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainSettings:
        """Read the ``[train]`` table of a TOML file; unknown keys are errors."""
        path = Path(path)
        d = read_toml(path, "training settings file")[0].get("train", {})
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"{path}: unknown [train] keys {sorted(unknown)}; known: {sorted(known)}"
            )
        for k in ("type_names", "freeze"):
            if k in d:
                d[k] = tuple(d[k])
        if "oversample" in d:  # a TOML table {level = k}
            if not isinstance(d["oversample"], dict):
                raise ValueError(
                    f"{path}: [train] oversample must be a table of source name or level of theory = repeat count"
                )
            d["oversample"] = tuple(sorted(d["oversample"].items()))
        if "species_weights" in d:  # a TOML table {element = weight}
            if not isinstance(d["species_weights"], dict):
                raise ValueError(
                    f"{path}: [train] species_weights must be a table of element = weight"
                )
            d["species_weights"] = tuple(sorted(d["species_weights"].items()))
        base = path.parent
        for k in (
            "dataset",
            "init_from",
            "run_dir",
            "replay",
        ):  # paths in the file are relative to the file (a model name stays)
            if (
                d.get(k)
                and not Path(d[k]).is_absolute()
                and not (k == "init_from" and d[k] in BUILTIN_MODELS)
            ):
                d[k] = str(base / d[k])
        if d.get("split_keep"):
            keep = d["split_keep"]
            keep = [keep] if isinstance(keep, str) else keep
            if not (isinstance(keep, list) and all(isinstance(x, str) for x in keep)):
                raise ValueError(
                    f"{path}: [train] split_keep must be a dataset path or a list of them"
                )
            keep = tuple(x if Path(x).is_absolute() else str(base / x) for x in keep)
            d["split_keep"] = keep[0] if len(keep) == 1 else keep
        return cls(**d)

    def __post_init__(self):
        if self.lr_schedule not in ("plateau", "cosine"):
            raise ValueError(
                f"lr_schedule must be 'plateau' or 'cosine' (got {self.lr_schedule!r})"
            )
        for level, k in self.oversample:
            if not (isinstance(k, int) and k >= 1):
                raise ValueError(f"oversample[{level!r}] must be an integer >= 1 (got {k!r})")
        for el, w in self.species_weights:
            if not (isinstance(w, (int, float)) and math.isfinite(w) and w > 0):
                raise ValueError(f"species_weights[{el!r}] must be a finite number > 0 (got {w!r})")
        if not (self.replay_fraction >= 0 and self.replay_weight > 0):
            raise ValueError(
                f"replay_fraction must be >= 0 and replay_weight > 0 (got {self.replay_fraction}, {self.replay_weight})"
            )


def frame_sources(path: str | Path) -> list[tuple[str, str]]:
    """(level of theory, source name) of every frame of a tea-align dataset, in order."""
    with tea_align.open_dataset(path) as ds:
        return [
            (b.sources[int(j)].level_of_theory, b.sources[int(j)].name)
            for b in ds.batches()
            for j in b.source_id
        ]


def frame_repeats(
    keys: Sequence[tuple[str, str]], repeat: dict[str, int], dataset="the dataset"
) -> list[int]:
    """Each frame's repeat count: ``repeat`` keyed by a source name (tea-align's ``name=``) or a level of theory (the
    source's name wins), 1 for a frame named by neither. ``keys``: ``frame_sources``. ValueError naming the keys that
    no frame has."""
    present = {x for k in keys for x in k if x}
    unknown = set(repeat) - present
    if unknown:
        raise ValueError(
            f"{dataset}: oversample names {sorted(unknown)}, which no frame has as its level of theory or source; "
            f"present: {sorted(present)}"
        )
    return [repeat.get(name, repeat.get(level, 1)) for level, name in keys]


def oversampled(
    indices: list[int],
    keys: Sequence[tuple[str, str]],
    repeat: dict[str, int],
    dataset="the dataset",
) -> list[int]:
    """``indices`` with each frame listed as many times as ``frame_repeats`` says (its source's or its level's count;
    sorted): a source or level with few atoms weighs more in each epoch's loss. Validation and test splits are never
    oversampled."""
    reps = frame_repeats(keys, repeat, dataset)
    return sorted(i for i in indices for _ in range(reps[i]))


def split_indices(
    n: int, val: float, test: float, seed: int, keep: int | Sequence[int] = 0
) -> tuple[list[int], list[int], list[int]]:
    """(train, validation, test) frame indices of a dataset of ``n`` frames: a seeded permutation, fractions of n.
    With ``keep`` > 0 the first ``keep`` frames (an earlier dataset that this one extends) are split exactly as that
    dataset alone was, and the frames after them separately with the same fractions: frames an earlier run validated or
    tested on never enter the training split of a run on the grown dataset. A list of sizes (increasing: datasets that
    grew round by round) splits each round's block as the run on that round's dataset did."""
    if not isinstance(keep, int):
        sizes = list(keep)
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise ValueError(
                f"split_keep: the earlier datasets must grow one from the next (frames {sizes})"
            )
        if not sizes:
            return split_indices(n, val, test, seed)
        return (
            split_indices(n, val, test, seed, sizes[-1])
            if len(sizes) == 1
            else _grown(
                split_indices(sizes[-1], val, test, seed, sizes[:-1]), n, sizes[-1], val, test, seed
            )
        )
    if keep:
        if not 0 < keep <= n:
            raise ValueError(
                f"split_keep: the earlier dataset has {keep} frames, this one {n}; it must extend it"
            )
        return _grown(split_indices(keep, val, test, seed), n, keep, val, test, seed)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(n)
    n_val = max(1, int(round(val * n)))
    n_test = max(1, int(round(test * n))) if test > 0 else 0
    if n - n_val - n_test < 1:
        raise ValueError(f"dataset of {n} frames is too small for the validation/test split")
    return (
        sorted(idx[n_val + n_test :].tolist()),
        sorted(idx[:n_val].tolist()),
        sorted(idx[n_val : n_val + n_test].tolist()),
    )


def _grown(
    old: tuple[list[int], list[int], list[int]],
    n: int,
    keep: int,
    val: float,
    test: float,
    seed: int,
) -> tuple[list[int], list[int], list[int]]:
    """The split ``old`` of the first ``keep`` frames, and frames keep..n-1 split on their own."""
    if keep == n:
        return old
    new = split_indices(n - keep, val, test, seed)
    return tuple(a + [keep + i for i in b] for a, b in zip(old, new))  # type: ignore[return-value]


def kept_blocks(dataset: str | Path, earlier: str | Path | Sequence[str | Path]) -> int | list[int]:
    """``kept_frames`` of one earlier dataset, or the frame counts of a list of them (each must open the next, and the
    last ``dataset``): the ``keep`` argument of ``split_indices``."""
    if isinstance(earlier, (str, Path)):
        return kept_frames(dataset, earlier)
    chain = [*earlier, dataset]
    return [kept_frames(b, a) for a, b in zip(chain, chain[1:])]


def kept_frames(dataset: str | Path, earlier: str | Path) -> int:
    """Number of frames of ``earlier`` after checking that they open ``dataset`` in the same order (same elements per
    frame and positions within 1e-6 A); raises ValueError naming the block of frames where they differ."""
    with tea_align.open_dataset(earlier) as old, tea_align.open_dataset(dataset) as cur:
        n_old = len(old)
        if n_old > len(cur):
            raise ValueError(
                f"split_keep: {earlier} has {n_old} frames, more than {dataset} ({len(cur)})"
            )
        i0 = 0
        for bo, bc in zip(
            old.batches(), cur.batches(stop=n_old)
        ):  # same batch boundaries: both start at frame 0
            same_atoms = np.array_equal(bo.offsets, bc.offsets) and np.array_equal(
                bo.numbers, bc.numbers
            )
            if not (same_atoms and np.allclose(bo.positions, bc.positions, atol=1e-6)):
                raise ValueError(
                    f"split_keep: frames {i0}..{i0 + bo.n_frames - 1} of {dataset} are not those of {earlier}: "
                    "the earlier dataset's frames must come first, in order"
                )
            i0 += bo.n_frames
    return n_old


def run_split(s: TrainSettings, n: int) -> tuple[list[int], list[int], list[int]]:
    """The (train, validation, test) indices a run with settings ``s`` uses on its dataset of ``n`` frames."""
    keep = kept_blocks(s.dataset, s.split_keep) if s.split_keep else 0
    return split_indices(n, s.val_fraction, s.test_fraction, s.seed, keep)


def replay_split(s: TrainSettings, n_train: int) -> tuple[list[int], list[int]]:
    """(training, validation) frame indices of the replay set ``s.replay`` through nequip: its held-out frames
    (``val_fraction``), and a fixed seeded draw of round(replay_fraction x n_train) of the others, each listed
    ``replay_weight`` times (an integer here). The replay and the new data must be at one level (``check_replay_level``)."""
    if float(s.replay_weight) != int(s.replay_weight):
        raise ValueError(
            f"replay_weight = {s.replay_weight}: through nequip the weight is a repeat count (an integer)"
        )
    check_replay_level(s.replay, s.dataset)
    with tea_align.open_dataset(s.replay) as ds:
        n = len(ds)
    r_train, r_val, _ = split_indices(n, s.val_fraction, 0.0, s.seed)
    k = int(round(s.replay_fraction * n_train))
    rng = np.random.default_rng(s.seed + 1)
    pick = rng.choice(r_train, k, replace=k > len(r_train)) if k else []
    return sorted(int(i) for i in pick for _ in range(int(s.replay_weight))), r_val


def dataset_elements(path: str | Path) -> tuple[str, ...]:
    """Elements present in an aligned dataset, ordered by atomic number."""
    zs = set()
    with tea_align.open_dataset(path) as ds:
        for b in ds.batches(65536):
            zs.update(np.unique(b.numbers).tolist())
    return tuple(chemical_symbols[z] for z in sorted(zs))


def nequip_config(s: TrainSettings) -> dict:
    """The nequip-train (Hydra) config of these settings, as a plain dict."""
    with tea_align.open_dataset(s.dataset) as ds:
        n = len(ds)
    train_idx, val_idx, test_idx = run_split(s, n)
    if s.oversample:
        train_idx = oversampled(train_idx, frame_sources(s.dataset), dict(s.oversample), s.dataset)
    level = dataset_level(s.dataset)
    if s.init_from:  # fine-tuning: the pretrained model's architecture, types and cutoff
        pretrained = load_potential(s.init_from)
        types, r_max = list(pretrained.species), pretrained.cutoff
        missing = set(dataset_elements(s.dataset)) - set(types)
        if missing:
            raise ValueError(
                f"{s.dataset}: elements {sorted(missing)} are not known to the pretrained model {s.init_from}"
            )
        check_levels(
            pretrained.level_of_theory,
            level,
            str(s.init_from),
            str(s.dataset),
            refit=s.refit_offsets,
        )
        frozen_parameters(
            pretrained.model, s.freeze, str(s.init_from)
        )  # an unknown group: refused before anything is written
        offsets = energy_offsets(pretrained, s.dataset, train_idx) if s.refit_offsets else {}
        model = {
            "_target_": "allegro_fm_model.training.finetune_model",
            "checkpoint_path": str(resolve_model(s.init_from).resolve()),
            "freeze": list(s.freeze),
            **({"energy_offsets": offsets} if offsets else {}),
        }
    else:
        types = list(s.type_names or dataset_elements(s.dataset))
        preset = get_preset(s.preset)
        r_max = preset.r_max
        shifts = reference_energies(s.dataset)
        model = preset.nequip_kwargs(types, seed=s.seed, model_dtype=s.model_dtype)
        model.update(
            {
                "_target_": "allegro.model.AllegroModel",
                "avg_num_neighbors": "${training_data_stats:num_neighbors_mean}",
                "per_type_energy_scales": "${training_data_stats:per_type_forces_rms}",
                "per_type_energy_shifts": {t: float(shifts.get(t, 0.0)) for t in types},
            }
        )
    transforms = [{"_target_": "nequip.data.transforms.NeighborListTransform", "r_max": r_max}]

    def ds(idx, path=None):
        return {
            "_target_": "allegro_fm_model.data.TeaAlignDataset",
            "file_name": str(Path(path or s.dataset).resolve()),
            "type_names": types,
            "indices": idx,
            "transforms": transforms,
        }

    train_ds, val_ds = ds(train_idx), ds(val_idx)
    if s.replay:  # replay frames join every epoch's training set; their held-out part is a second validation set
        r_train, r_val = replay_split(s, len(train_idx))
        if r_train:  # replay_fraction 0: the replay set's held-out frames only watched (a forgetting curve), not trained
            train_ds = {
                "_target_": "allegro_fm_model.data.MixedDataset",
                "parts": [
                    {"file_name": str(Path(s.dataset).resolve()), "indices": train_idx},
                    {"file_name": str(Path(s.replay).resolve()), "indices": r_train},
                ],
                "type_names": types,
                "transforms": transforms,
            }
        val_ds = [val_ds, ds(r_val, s.replay)]

    loader = {
        "_target_": "torch.utils.data.DataLoader",
        "batch_size": s.batch_size,
        "num_workers": s.num_workers,
    }
    rmse = "allegro_fm_model.metrics.LabelledRMSE"
    weights = species_weight_list(s.species_weights, types, s.init_from or s.dataset)
    force_field = (
        {
            "_target_": "allegro_fm_model.metrics.SpeciesWeighted",
            "field": "forces",
            "weights": weights,
        }
        if s.species_weights
        else "forces"
    )
    loss_entries = [
        {
            "name": "per_atom_energy_rmse",
            "field": {"_target_": "nequip.data.PerAtomModifier", "field": "total_energy"},
            "coeff": s.energy_weight,
            "metric": {"_target_": rmse},
        },
        {
            "name": "species_weighted_forces_rmse" if s.species_weights else "forces_rmse",
            "field": force_field,
            "coeff": s.force_weight,
            "metric": {"_target_": rmse},
            "ignore_nan": True,
        },
        {
            "name": "stress_rmse",
            "field": "stress",
            "coeff": s.stress_weight,
            "metric": {"_target_": rmse},
            "ignore_nan": True,
        },
    ]
    metric_entries = loss_entries + [
        *(
            [
                {
                    "name": "forces_rmse",
                    "field": "forces",
                    "coeff": None,
                    "metric": {"_target_": rmse},
                    "ignore_nan": True,
                }
            ]
            if s.species_weights
            else []
        ),
        {
            "name": "per_type_forces_rmse",
            "field": "forces",
            "coeff": None,
            "metric": {"_target_": rmse},
            "per_type": True,
            "ignore_nan": True,
        },
    ]
    run_dir = str(Path(s.run_dir).resolve())
    return {
        "run": ["train", "test"] if test_idx else ["train"],
        "hydra": {"run": {"dir": run_dir}},
        "data": {
            "_target_": "nequip.data.datamodule.NequIPDataModule",
            "seed": s.seed,
            "train_dataset": train_ds,
            "val_dataset": val_ds,
            **({"test_dataset": ds(test_idx)} if test_idx else {}),
            "train_dataloader": {**loader, "shuffle": True},
            "val_dataloader": loader,
            "test_dataloader": loader,
            "stats_manager": {
                "_target_": "nequip.data.CommonDataStatisticsManager",
                "type_names": types,
                "dataloader_kwargs": {"batch_size": max(s.batch_size, 8)},
            },
        },
        "trainer": {
            "_target_": "lightning.Trainer",
            "accelerator": s.accelerator,
            "devices": s.devices,
            "num_nodes": s.num_nodes,
            "strategy": s.strategy,
            "max_epochs": s.max_epochs,
            "enable_checkpointing": True,
            "log_every_n_steps": 1,
            "enable_progress_bar": _on_terminal(),  # a log file gets one line per epoch (callbacks.EpochLine) instead
            "logger": {
                "_target_": "lightning.pytorch.loggers.CSVLogger",
                "save_dir": run_dir,
                "name": "logs",
            },
            # best.ckpt when the validation loss improves; last.ckpt after every epoch (Lightning >= 2.6 writes its
            # save_last file only when the monitored checkpoint is written, which would leave a resume point stale)
            "callbacks": [
                {
                    "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "dirpath": run_dir,
                    "monitor": "val0_epoch/weighted_sum",
                    "filename": "best",
                    "save_last": False,
                    "enable_version_counter": False,
                },  # a resumed run keeps writing best.ckpt / last.ckpt
                {
                    "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "dirpath": run_dir,
                    "monitor": None,
                    "filename": "last",
                    "save_top_k": 1,
                    "every_n_epochs": 1,
                    "enable_version_counter": False,
                },
                {
                    "_target_": "allegro_fm_model.callbacks.WeightsDigest",
                    "dirpath": run_dir,
                },  # DDP: ranks in sync
                {"_target_": "allegro_fm_model.callbacks.LevelOfTheory", "level": level},
                *([] if _on_terminal() else [{"_target_": "allegro_fm_model.callbacks.EpochLine"}]),
            ],
        },
        "training_module": {
            "_target_": "nequip.train.EMALightningModule",
            "ema_decay": s.ema_decay,
            "loss": {
                "_target_": "nequip.train.MetricsManager",
                "metrics": loss_entries,
                "type_names": types,
            },
            "val_metrics": {
                "_target_": "nequip.train.MetricsManager",
                "metrics": metric_entries,
                "type_names": types,
            },
            "test_metrics": {
                "_target_": "nequip.train.MetricsManager",
                "metrics": metric_entries,
                "type_names": types,
            },
            "optimizer": (
                {
                    "_target_": "allegro_fm_model.sam.SAM",
                    "base": "torch.optim.Adam",
                    "rho": s.sam_rho,
                    "lr": s.learning_rate,
                }
                if s.sam_rho > 0
                else {"_target_": "torch.optim.Adam", "lr": s.learning_rate}
            ),
            "model": model,
            **(
                {
                    "lr_scheduler": {
                        "scheduler": {
                            "_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau",
                            "factor": 0.5,
                            "patience": s.lr_patience,
                            "min_lr": s.lr_min,
                        },
                        "monitor": "val0_epoch/weighted_sum",
                        "interval": "epoch",
                        "frequency": 1,
                    }
                }
                if s.lr_schedule == "plateau" and s.lr_patience > 0
                else {}
            ),
            **(
                {
                    "lr_scheduler": {
                        "scheduler": {
                            "_target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
                            "T_max": s.max_epochs,
                            "eta_min": s.lr_min,
                        },
                        "interval": "epoch",
                        "frequency": 1,
                    }
                }
                if s.lr_schedule == "cosine"
                else {}
            ),
        },
        "global_options": {"allow_tf32": False},
    }


def _on_terminal() -> bool:
    """True when stderr (where nequip-train's subprocess writes) is a terminal: Lightning's bar only there."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def write_config(s: TrainSettings) -> Path:
    """Write run_dir/config.yaml (and settings.toml-equivalent JSON) for nequip-train; returns the yaml path."""
    cfg = nequip_config(s)  # every check first: a refused run leaves no run folder behind
    run = Path(s.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run / "settings.json", json.dumps(asdict(s), indent=1))
    return write_text_atomic(run / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))


def train(s: TrainSettings, extra_overrides: list[str] | None = None) -> Path:
    """Run nequip-train on the settings; resumes from run_dir/last.ckpt if it exists. Returns run_dir."""
    if s.freeze and not s.init_from:
        raise ValueError("freeze needs init_from (a pretrained checkpoint to fine-tune)")
    cfg = write_config(s)
    run = cfg.parent.resolve()
    cmd = [sys.executable, "-m", "nequip.scripts.train", "-cp", str(run), "-cn", "config"]
    last = run / "last.ckpt"
    if last.exists():
        cmd.append(f"++ckpt_path={last}")
    cmd += list(extra_overrides or [])
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    subprocess.run(cmd, check=True, cwd=run, env=env)
    return run


#: Friendly names of parameter groups that fine-tuning can freeze, as prefixes of nequip-allegro names.
FREEZE_GROUPS: dict[str, tuple[str, ...]] = {
    "embedding": (
        "model.func.radial_chemical_embed",
        "model.func.scalar_embed_mlp",
        "model.func.tensor_embed",
    ),
    "layer0": (
        "model.func.allegro.first_layer_env_embed_projection",
        "model.func.allegro.latents.0",
        "model.func.allegro.tps.0",
    ),
    "layer1": ("model.func.allegro.latents.1", "model.func.allegro.tps.1"),
    "readout": ("model.func.edge_readout",),
    "energy_shifts": ("model.func.per_type_energy_scale_shift",),
}


def species_weight_list(
    species_weights: Sequence[tuple[str, float]], types: Sequence[str], source: str = "the model"
) -> list[float]:
    """Force-loss weights per type of ``types`` (1 for a type not named); ValueError naming ``source`` and the
    elements when ``species_weights`` names one the model has no type for."""
    given = dict(species_weights)
    unknown = sorted(set(given) - set(types))
    if unknown:
        raise ValueError(
            f"species_weights names {unknown}, which {source} has no type for; its types: {' '.join(types)}"
        )
    return [float(given.get(t, 1.0)) for t in types]


def finetune_model(
    checkpoint_path: str, freeze: list[str] = (), energy_offsets: dict[str, float] | None = None
):  # noqa: B006
    """Model builder for fine-tuning (used in the generated config): the pretrained weights of a checkpoint or of a
    nequip package (``.nequip.zip``, e.g. a shipped model: nequip's ModelFromPackage), with the parameters of
    ``freeze`` (group names of FREEZE_GROUPS or raw name prefixes) not trained. ``energy_offsets`` (eV per element,
    ``evaluate.energy_offsets``) are added to the per-type energy shifts: the model starts on the new data's level."""
    from nequip.model import ModelFromCheckpoint, ModelFromPackage  # lazy: nequip imports torch

    load = ModelFromPackage if str(checkpoint_path).endswith(".nequip.zip") else ModelFromCheckpoint
    models = load(checkpoint_path)
    for m in models.values():
        _shift_energies(m, dict(energy_offsets or {}))
        for prm in frozen_parameters(m, freeze, checkpoint_path):
            prm.requires_grad_(False)
    return models


def frozen_parameters(model, freeze: Sequence[str], source: str = "the model") -> list:
    """The parameters of ``model`` that the groups ``freeze`` (names of FREEZE_GROUPS or raw name prefixes) hold fixed;
    ValueError naming ``source`` when a group matches no parameter."""
    params = list(model.named_parameters())
    out = []
    for group in freeze:
        prefixes = FREEZE_GROUPS.get(group, (group,))
        hit = [p for name, p in params if any(name.startswith(x) for x in prefixes)]
        if not hit:
            raise ValueError(
                f"{source}: freeze group {group!r} matches no parameter; groups: {' '.join(sorted(FREEZE_GROUPS))} "
                "(or a parameter-name prefix)"
            )
        out += hit
    return out


def _shift_energies(model, offsets: dict[str, float]) -> None:
    """Add ``offsets`` (eV per element) to a nequip Allegro model's per-type energy shifts, in place."""
    if not offsets:
        return
    import torch  # lazy: torch takes seconds to import

    shifts = model.model.func.per_type_energy_scale_shift.shifts
    names = str(model.metadata["type_names"]).split()
    if shifts.numel() != len(names):
        raise ValueError(
            f"the model has one energy shift for all {len(names)} types: per-element offsets cannot be refitted"
        )
    with torch.no_grad():
        for el, d in offsets.items():
            shifts[names.index(el)] += float(d)


__all__ = [
    "TrainSettings",
    "nequip_config",
    "write_config",
    "train",
    "dataset_elements",
    "split_indices",
    "species_weight_list",
    "frame_sources",
    "frame_repeats",
    "run_split",
    "kept_frames",
    "oversampled",
    "finetune_model",
]
