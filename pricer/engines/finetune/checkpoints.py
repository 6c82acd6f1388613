"""Checkpoints of a fine-tuning run: saved so a kill at any moment leaves a whole one, loaded to resume exactly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricer.engines.finetune.adapter import RECORD_FORMAT
from pricer.errors import ModelError
from pricer.files import atomic_write_bytes, atomic_write_text, read_json

CHECKPOINT = "checkpoint"
_CHECKPOINT_NEW = ".checkpoint.new"  # built here, then renamed to CHECKPOINT
_CHECKPOINT_OLD = ".checkpoint.old"  # the previous checkpoint while the new one is swapped in
_CHECKPOINT_STATE = "state.json"  # written last: a checkpoint folder without it is incomplete
_CHECKPOINT_ADAPTER = "adapter.safetensors"
_CHECKPOINT_OPTIMIZER = "optimizer.safetensors"


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """What resuming needs: the step reached, LoRA weights, AdamW's state, the RNG and the run so far."""

    step: int
    adapter: dict[str, Any]  # name -> fp32 tensor
    optimizer: dict[str, Any]  # "state.<param>.<key>" -> tensor, and "rng.torch"
    made_with: dict[str, Any]  # hyper-parameters and input hashes it must match
    losses: tuple[float, ...]
    tokens: int
    seconds: float


def save_checkpoint(out: Path, checkpoint: Checkpoint) -> None:
    """Write DIR/checkpoint so a kill at any moment leaves the previous checkpoint or this one, whole."""
    from safetensors.torch import save

    out = Path(out)
    new, old, current = out / _CHECKPOINT_NEW, out / _CHECKPOINT_OLD, out / CHECKPOINT
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    atomic_write_bytes(new / _CHECKPOINT_ADAPTER, save(_contiguous(checkpoint.adapter)))
    atomic_write_bytes(new / _CHECKPOINT_OPTIMIZER, save(_contiguous(checkpoint.optimizer)))
    state = {"format": RECORD_FORMAT, "step": checkpoint.step, "made_with": checkpoint.made_with,
             "losses": list(checkpoint.losses), "tokens": checkpoint.tokens, "seconds": checkpoint.seconds}
    # Plain json.dumps, not files.dumps_json: its 6-digit rounding would change what resuming reads back.
    atomic_write_text(new / _CHECKPOINT_STATE, json.dumps(state, sort_keys=True, indent=2) + "\n")
    # A folder cannot replace a non-empty one in one rename: move the old aside, move the new in, drop the old.
    # load_checkpoint puts the old one back if a kill lands between the two renames.
    if current.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(current, old)
    os.replace(new, current)
    _fsync_dir(out)
    shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(out: Path) -> Checkpoint | None:
    """The checkpoint in DIR, or None; recovers from a kill during save_checkpoint."""
    from safetensors.torch import load_file

    out = Path(out)
    current, old = out / CHECKPOINT, out / _CHECKPOINT_OLD
    if not current.exists() and (old / _CHECKPOINT_STATE).is_file():
        os.replace(old, current)  # killed between the two renames: the old checkpoint is the latest whole one
    shutil.rmtree(out / _CHECKPOINT_NEW, ignore_errors=True)  # a save that never finished
    if not current.exists():
        return None
    state_path = current / _CHECKPOINT_STATE
    if not state_path.is_file():
        raise ModelError(f"{current}: incomplete checkpoint (no {_CHECKPOINT_STATE}); delete it to start over")
    state = read_json(state_path, error=ModelError)
    if state.get("format") != RECORD_FORMAT or not isinstance(state.get("step"), int):
        raise ModelError(f"{state_path}: not a pricer checkpoint of format {RECORD_FORMAT}; "
                         f"delete {current} to start over")
    try:
        adapter = load_file(current / _CHECKPOINT_ADAPTER)
        optimizer = load_file(current / _CHECKPOINT_OPTIMIZER)
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise ModelError(f"{current}: checkpoint weights cannot be read ({type(exc).__name__}: {exc}); "
                         f"delete {current} to start over") from None
    return Checkpoint(step=state["step"], adapter=adapter, optimizer=optimizer, made_with=state["made_with"],
                      losses=tuple(state["losses"]), tokens=state["tokens"], seconds=state["seconds"])


def _contiguous(tensors: dict[str, Any]) -> dict[str, Any]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in tensors.items()}


def _fsync_dir(folder: Path) -> None:
    """Make the renames themselves durable, not only the files' contents."""
    with contextlib.suppress(OSError):  # some file systems cannot open a directory for fsync
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def optimizer_tensors(optimizer: Any) -> dict[str, Any]:
    """AdamW's per-parameter state as flat tensors, plus torch's RNG: safetensors, no pickle."""
    import torch

    flat = {f"state.{index}.{key}": value for index, entries in optimizer.state_dict()["state"].items()
            for key, value in entries.items()}
    if any(not isinstance(v, torch.Tensor) for v in flat.values()):
        raise ModelError("optimizer state holds non-tensor values; cannot checkpoint it as safetensors")
    return flat | {"rng.torch": torch.get_rng_state()}


def restore_optimizer(optimizer: Any, tensors: dict[str, Any]) -> None:
    import torch

    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    # Hyper-parameters come from the config, which must match the checkpoint's; only moments and step are restored.
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
