"""What a run is, so that a resumed run is the same run: its id, the species of every atom id, the model.

``run.json`` in the output folder records the run's id (new at a fresh start, kept by every resume), the SHA-256 of the
element of each atom id (``species_sha256``), of the model (``model_sha256``) and of the run file that started or last
resumed it. Every restart carries the first three. Resuming is refused, naming both sides, when the restart's run is
not the one the folder holds, when the structure puts other elements at the atom ids, and when the model changed
(unless ``[output] allow_model_change = true``, which is then noted in thermo.log). Restarts written before these keys
existed resume with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tea_align.files import write_text_atomic

from .errors import MDInputError

log = logging.getLogger("allegro_fm_md")
RUN_FILE_NAME = "run.json"


def species_sha256(unit_numbers: np.ndarray, cells: int) -> str:
    """SHA-256 of the atomic numbers (uint8) of all atom ids of ``unit_numbers`` repeated ``cells`` times (ids in ase's
    ``atoms * reps`` order): equal for a replicated unit cell and the same supercell read whole. Streamed in 1 MiB
    blocks: no array of the system is made."""
    unit = np.asarray(unit_numbers, dtype=np.uint8).tobytes()
    h = hashlib.sha256()
    if unit:
        per_block = max(1, (1 << 20) // len(unit))
        block = unit * per_block
        full, rest = divmod(int(cells), per_block)
        for _ in range(full):
            h.update(block)
        h.update(unit * rest)
    return h.hexdigest()


def model_sha256(spec) -> str:
    """SHA-256 of a [potential] table's model: the model file's bytes when ``model`` names a file (a committee: its
    members' bytes and weights), else its kind, name and parameters (a shipped model by name is identified by its
    name)."""
    h = hashlib.sha256()
    files = [Path(m) for m in ([spec.model] if spec.model else list(getattr(spec, "models", [])))]
    if files and all(p.is_file() for p in files):  # a committee: its members' bytes and weights
        for path in files:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        if getattr(spec, "weights", None):
            h.update(json.dumps(list(spec.weights)).encode())
    else:
        d = {
            k: v
            for k, v in asdict(spec).items()
            if k not in ("device", "max_edges_per_call", "memory_budget_gib")
        }
        h.update(json.dumps(d, sort_keys=True, default=str).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class RunIdentity:
    """The keys every restart of a run carries (see the module docstring)."""

    run_id: str
    species_sha256: str
    model_sha256: str

    def meta(self) -> dict:
        return asdict(self)


def read_run_json(outdir: str | Path) -> dict | None:
    """The folder's run.json, or None when there is none (a fresh folder, or one written before run.json existed)."""
    try:
        return json.loads((Path(outdir) / RUN_FILE_NAME).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise MDInputError(
            f"{Path(outdir) / RUN_FILE_NAME}: unreadable ({exc}); it records which run this folder holds"
        ) from exc


def settle_identity(
    outdir: str | Path,
    species: str,
    model: str,
    runfile_sha: str,
    restart_meta: dict | None,
    restart_path: str = "",
    allow_model_change: bool = False,
) -> tuple[RunIdentity, str | None]:
    """The identity of the run about to start in ``outdir`` (rank 0, holding the folder's lock): checks a resume
    (``restart_meta``: the restart's meta/index) against the structure, the model and the folder's run, then writes
    run.json. Returns (identity, a note for thermo.log when the model changed, else None). MDInputError naming both sides."""
    folder = read_run_json(outdir)
    run_id = None
    note = None
    if restart_meta is not None:
        old_species, old_model, old_id = (
            restart_meta.get(k) for k in ("species_sha256", "model_sha256", "run_id")
        )
        if old_id is None:
            log.warning(
                "%s: a restart without run identity (written by an older allegro-fm-md): species and model not checked",
                restart_path,
            )
        if old_species is not None and old_species != species:
            raise MDInputError(
                f"{restart_path}: the restart's atoms are other elements (species {old_species[:12]}) than the "
                f"structure's at the same atom ids (species {species[:12]}): not the same system"
            )
        if old_model is not None and old_model != model:
            if not allow_model_change:
                raise MDInputError(
                    f"{restart_path}: written with another model (sha256 {old_model[:12]}) than this run file's "
                    f"(sha256 {model[:12]}); set [output] allow_model_change = true to continue with it"
                )
            note = f"# step {restart_meta.get('step')}: model changed, sha256 {old_model[:12]} -> {model[:12]} (allow_model_change)"
        if folder is not None and old_id is not None and folder.get("run_id") != old_id:
            raise MDInputError(
                f"{outdir} holds run {folder.get('run_id')}, but {restart_path} is a restart of run {old_id}: "
                "resume it in its own folder or a new one, never into another run's"
            )
        run_id = (
            old_id  # a fresh start (or one into a folder being overwritten) gets a new id below
        )
    ident = RunIdentity(run_id or uuid.uuid4().hex, species, model)
    write_text_atomic(
        Path(outdir) / RUN_FILE_NAME,
        json.dumps({**ident.meta(), "runfile_sha256": runfile_sha}, indent=1),
    )
    return ident, note
