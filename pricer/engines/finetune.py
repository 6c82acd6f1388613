"""QLoRA fine-tuning on the train split: LoRA on a quantized base, loss on the price only, exact resume.

A hand-rolled loop (AdamW, seeded batch order, no dropout) rather than HF Trainer: a checkpoint is then just the
LoRA weights, AdamW's moments and the step, and a resumed run repeats an uninterrupted one step for step.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pricer.engines.models import (ADAPTER_BASE_SHA_KEY, ADAPTER_CONFIG, ADAPTER_RECORD, ADAPTER_WEIGHTS, DEFAULT_MODEL,
                           DTYPES, LoadedModel, load_model)
from pricer.errors import ModelError, OptionError
from pricer.files import atomic_write_bytes, atomic_write_text, read_json, write_json
from pricer.task.items import Item, items_digest

RECORD = ADAPTER_RECORD  # how the adapter was made: base and data hashes, hyper-parameters, versions, speed
RECORD_FORMAT = 1
CHECKPOINT = "checkpoint"
_CHECKPOINT_NEW = ".checkpoint.new"  # built here, then renamed to CHECKPOINT
_CHECKPOINT_OLD = ".checkpoint.old"  # the previous checkpoint while the new one is swapped in
_CHECKPOINT_STATE = "state.json"  # written last: a checkpoint folder without it is incomplete
_CHECKPOINT_ADAPTER = "adapter.safetensors"
_CHECKPOINT_OPTIMIZER = "optimizer.safetensors"

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # every linear layer
TRAIN_BITS = (4, 16, 32)  # LLM.int8 has no CPU backward in bitsandbytes 0.50; 4 bits is QLoRA proper
# Defaults, measured on this project's CI machine (AMD EPYC, 2 cores, fp32 compute): see docs/finetune.md.
DEFAULT_STEPS = 48  # 384 of 998 items, 6-12 min on 2 cores; Error drops at every width; an epoch (125) was no better
DEFAULT_BATCH_SIZE = 8
DEFAULT_LR = 3e-4  # higher than the course's 1e-4 because the run is a few dozen steps, not an epoch
DEFAULT_RANK = 8  # r=8 on every linear layer: 4.9M parameters, 4.9 MB stored as float16
DEFAULT_ALPHA_PER_RANK = 2  # lora_alpha = 2 r, the course's ratio (r=32, alpha=64)
DEFAULT_SEED = 42
DEFAULT_CHECKPOINT_EVERY = 8  # a kill loses at most this many steps (~2 minutes on 2 CPU cores)
WARMUP_SHARE = 0.1  # linear warm-up over the first 10% of steps, then cosine decay to 0, as the course does
MAX_GRAD_NORM = 1.0
SAVE_DTYPE = "float16"  # the finished adapter; halves the committed file, and LoRA deltas lose nothing visible


@dataclass(frozen=True, slots=True, kw_only=True)
class FinetuneConfig:
    """Everything that decides the trained adapter; a checkpoint resumes only under the same config."""

    model: str = DEFAULT_MODEL
    bits: int = 4
    steps: int = DEFAULT_STEPS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LR
    rank: int = DEFAULT_RANK
    alpha: int | None = None  # None: DEFAULT_ALPHA_PER_RANK * rank
    seed: int = DEFAULT_SEED
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    weight_decay: float = 0.0
    device: str | None = None  # None: cuda when available, else cpu
    # None: float32 on CPU (the brief's and QLoRA's fp32 gradients; pinned, not probed, so a resumed run cannot pick
    # another), the GPU's half type on CUDA. bfloat16 trains ~1.7x faster on CPUs with AVX512-BF16.
    compute_dtype: str | None = None

    def __post_init__(self) -> None:
        if self.bits not in TRAIN_BITS or isinstance(self.bits, bool):
            raise OptionError(f"bits: '{self.bits}' is not one of {', '.join(map(str, TRAIN_BITS))} "
                              "(8-bit LLM.int8 layers cannot be trained on CPU)")
        for name in ("steps", "batch_size", "rank", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise OptionError(f"{name}: {value!r} is not a positive integer")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise OptionError(f"lr: {self.lr!r} is not a positive number")
        if self.alpha is not None and (not isinstance(self.alpha, int) or self.alpha < 1):
            raise OptionError(f"alpha: {self.alpha!r} is not a positive integer")
        if self.compute_dtype is not None and self.compute_dtype not in DTYPES:
            raise OptionError(f"compute_dtype: {self.compute_dtype!r} is not one of {', '.join(DTYPES)}")

    @property
    def lora_alpha(self) -> int:
        return self.alpha if self.alpha is not None else DEFAULT_ALPHA_PER_RANK * self.rank

    @property
    def warmup_steps(self) -> int:
        return math.ceil(WARMUP_SHARE * self.steps)

    def hyperparameters(self) -> dict[str, Any]:
        """Plain JSON types: what a checkpoint must match and the adapter's record lists."""
        chosen = (f.name for f in fields(self) if f.name not in ("model", "device", "compute_dtype"))
        out = {name: getattr(self, name) for name in chosen}
        return out | {"lora_alpha": self.lora_alpha, "lora_dropout": 0.0, "warmup_steps": self.warmup_steps,
                      "schedule": "linear warm-up, cosine to 0", "optimizer": "AdamW", "max_grad_norm": MAX_GRAD_NORM,
                      "target_modules": list(TARGET_MODULES), "target": "price rounded to whole dollars + '.00' + EOS"}


@dataclass(frozen=True, slots=True, kw_only=True)
class FinetuneResult:
    """A finished run: where the adapter is and what it cost."""

    out: Path
    steps: int
    resumed_from: int  # the step the run started at: 0 for a fresh run
    seconds: float  # training time over every run that made this adapter, loading excluded
    tokens: int  # prompt and price tokens the model was trained on, padding excluded
    first_loss: float
    last_loss: float
    adapter_bytes: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


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


class StopTraining(Exception):
    """Raised by an on_step callback to stop a run where it is, as a kill would."""


# ---------------------------------------------------------------- pure pieces: target text, batches, schedule


def target_text(price: float) -> str:
    """What the model learns to write after "Price is $": the course's whole dollars, e.g. 20.95 -> "21.00"."""
    return f"{round(price)}.00"  # Python rounds halves to even, as the course's str(round(price)) did


def batch_indices(step: int, *, n_items: int, batch_size: int, seed: int) -> list[int]:
    """The items of a 0-based step: a seeded permutation per epoch, so any step is known without replaying others."""
    import numpy as np

    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n_items)
        indices.append(int(np.random.default_rng([seed, epoch]).permutation(n_items)[offset]))
    return indices


def lr_at(step: int, *, lr: float, steps: int, warmup_steps: int) -> float:
    """Learning rate of a 0-based step: linear warm-up, then cosine decay to 0 at the last step."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(steps - warmup_steps, 1)
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / span))


def encode(tokenizer: Any, item: Item) -> tuple[list[int], list[int]]:
    """(prompt ids exactly as prediction tokenizes them, price ids + EOS): the loss is on the second part only."""
    prompt = tokenizer(item.prompt)["input_ids"]
    price = tokenizer(target_text(item.price), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt, price


def collate(pairs: Sequence[tuple[list[int], list[int]]], *, pad_id: int):  # -> dict of tensors and `keep`
    """Left-pad as prediction does, so every price ends the row and only the last `keep` logits are needed."""
    import torch

    rows = [prompt + price for prompt, price in pairs]
    width = max(map(len, rows))
    keep = max(len(price) for _, price in pairs) + 1  # logits at the `keep` last positions predict every price token
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), keep - 1), -100, dtype=torch.long)
    for row, ((_, price), ids) in enumerate(zip(pairs, rows)):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention_mask[row, width - len(ids):] = 1
        labels[row, keep - 1 - len(price):] = torch.tensor(price)
    # Positions count real tokens only, as generate() computes them under left padding.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
            "labels": labels, "keep": keep}


def price_loss(model: Any, batch: dict[str, Any]):  # -> scalar tensor
    """Mean cross-entropy over the price tokens of the batch."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=batch["keep"], use_cache=False).logits
    predicting = logits[:, :-1, :].float()  # the last position predicts past the end of the row
    return torch.nn.functional.cross_entropy(predicting.reshape(-1, predicting.shape[-1]),
                                             batch["labels"].reshape(-1).to(predicting.device), ignore_index=-100)


# ---------------------------------------------------------------- checkpoints


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


def _optimizer_tensors(optimizer: Any) -> dict[str, Any]:
    """AdamW's per-parameter state as flat tensors, plus torch's RNG: safetensors, no pickle."""
    import torch

    flat = {f"state.{index}.{key}": value for index, entries in optimizer.state_dict()["state"].items()
            for key, value in entries.items()}
    if any(not isinstance(v, torch.Tensor) for v in flat.values()):
        raise ModelError("optimizer state holds non-tensor values; cannot checkpoint it as safetensors")
    return flat | {"rng.torch": torch.get_rng_state()}


def _restore_optimizer(optimizer: Any, tensors: dict[str, Any]) -> None:
    import torch

    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    # Hyper-parameters come from the config, which must match the checkpoint's; only moments and step are restored.
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])


# ---------------------------------------------------------------- training


def finetune(
    config: FinetuneConfig,
    items: Sequence[Item],
    *,
    out: Path,
    resume: bool = False,
    base: LoadedModel | None = None,
    on_step: Callable[[int, float], None] | None = None,
    progress: bool | None = None,
    data_source: str | None = None,
) -> FinetuneResult:
    """Train a LoRA adapter on `items` into `out`, resuming from `out/checkpoint` when it exists.

    `base` lends an already-loaded model (the same config.model and config.bits, loaded with compute dtype
    float32 on CPU); it is returned unchanged. `on_step(step, loss)` runs after each update; raising
    StopTraining there stops the run as a kill would.
    """
    out = Path(out)
    existing = _checkpoint_to_resume(out, items, resume=resume)
    loaded = _base_model(config, base)
    made_with = _made_with(config, items, loaded)
    if existing is not None:
        _check_same_run(out, existing.made_with, made_with)

    model = _with_lora(loaded, config)
    try:
        run = _train(model, loaded, config, items, out=out, existing=existing, made_with=made_with, on_step=on_step,
                     progress=progress)
        adapter_bytes = _save_adapter(out, model, loaded=loaded, config=config, made_with=made_with, losses=run.losses,
                                      tokens=run.tokens, seconds=run.seconds, data_source=data_source)
        shutil.rmtree(out / CHECKPOINT, ignore_errors=True)  # the adapter is whole: nothing left to resume
    finally:
        _without_lora(model, loaded)
        if base is None:
            loaded.close()
    return FinetuneResult(out=out, steps=run.step, resumed_from=run.resumed_from, seconds=run.seconds,
                          tokens=run.tokens, first_loss=run.losses[0], last_loss=run.losses[-1],
                          adapter_bytes=adapter_bytes)


@dataclass(slots=True, kw_only=True)
class _Run:
    """A run's totals so far; not frozen, as each step adds to them. What a checkpoint saves and the result reports."""

    resumed_from: int  # the step the run started at: 0 for a fresh run
    step: int
    losses: list[float]
    tokens: int
    seconds: float


def _checkpoint_to_resume(out: Path, items: Sequence[Item], *, resume: bool) -> Checkpoint | None:
    """The checkpoint in `out`, or None for a fresh run; refuses no items, --resume without one, a finished adapter."""
    if not items:
        raise OptionError("finetune: no training items")
    existing = load_checkpoint(out)
    if existing is None:
        if resume:
            raise OptionError(f"--resume: {out / CHECKPOINT} not found; run without --resume to start a new adapter")
        if (out / RECORD).is_file():
            raise OptionError(f"{out}: already holds a trained adapter ({RECORD}); pass another --out, "
                              "or delete the folder to train it again")
    return existing


def _base_model(config: FinetuneConfig, base: LoadedModel | None) -> LoadedModel:
    """The lent base, checked to be at config.bits, or the config's model loaded here."""
    if base is not None and base.info.bits != config.bits:
        raise OptionError(f"finetune: the lent base is loaded at {base.info.bits} bits, the config asks {config.bits}")
    return base or load_model(config.model, bits=config.bits, device=config.device,
                              compute_dtype=config.compute_dtype or _compute_dtype(config.device))


def _made_with(config: FinetuneConfig, items: Sequence[Item], loaded: LoadedModel) -> dict[str, Any]:
    """Hyper-parameters and input hashes: a checkpoint resumes only when they match."""
    return {"hyperparameters": config.hyperparameters(), "data_sha256": items_digest(items), "n_items": len(items),
            "base_model_sha256": loaded.info.weights_sha256, "bits": config.bits,
            "compute_dtype": loaded.info.compute_dtype}


def _train(model: Any, loaded: LoadedModel, config: FinetuneConfig, items: Sequence[Item], *, out: Path,
           existing: Checkpoint | None, made_with: dict[str, Any], on_step: Callable[[int, float], None] | None,
           progress: bool | None) -> _Run:
    """Train from the checkpoint's step (or 0) to config.steps, checkpointing every config.checkpoint_every steps."""
    import torch
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    run = _resume(model, optimizer, existing, out=out)
    encoded: dict[int, tuple[list[int], list[int]]] = {}
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=config.steps, initial=run.step, desc=f"finetune {loaded.info.name} {config.bits}bit",
               unit="step", disable=not show)
    model.train()
    with bar:
        while run.step < config.steps:
            start = time.perf_counter()
            batch = _batch(run.step, items=items, config=config, tokenizer=loaded.tokenizer, encoded=encoded,
                           device=model.device)
            loss = _update(model, optimizer, params, batch,
                           lr=lr_at(run.step, lr=config.lr, steps=config.steps, warmup_steps=config.warmup_steps))
            run.step += 1
            run.losses.append(loss)
            run.tokens += int(batch["attention_mask"].sum())
            run.seconds += time.perf_counter() - start
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{run.tokens / run.seconds:.0f}")
            if run.step % config.checkpoint_every == 0 or run.step == config.steps:
                save_checkpoint(out, Checkpoint(
                    step=run.step, adapter=_adapter_state(model), optimizer=_optimizer_tensors(optimizer),
                    made_with=made_with, losses=tuple(run.losses), tokens=run.tokens, seconds=run.seconds))
                if not show:  # a CI log or nohup file gets a line per checkpoint instead of the bar
                    print(f"step {run.step}/{config.steps} loss {loss:.3f} {run.tokens / run.seconds:.0f} tokens/s, "
                          f"checkpoint written", file=sys.stderr, flush=True)
            if on_step is not None:
                on_step(run.step, loss)
    return run


def _resume(model: Any, optimizer: Any, existing: Checkpoint | None, *, out: Path) -> _Run:
    """A fresh run, or the checkpoint's LoRA weights, AdamW moments and RNG restored and its totals carried on."""
    if existing is None:
        return _Run(resumed_from=0, step=0, losses=[], tokens=0, seconds=0.0)
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, existing.adapter)
    if getattr(result, "unexpected_keys", None):
        raise ModelError(f"{out / CHECKPOINT}: weights {result.unexpected_keys[:3]} do not fit this model")
    _restore_optimizer(optimizer, existing.optimizer)
    return _Run(resumed_from=existing.step, step=existing.step, losses=list(existing.losses), tokens=existing.tokens,
                seconds=existing.seconds)


def _batch(step: int, *, items: Sequence[Item], config: FinetuneConfig, tokenizer: Any,
           encoded: dict[int, tuple[list[int], list[int]]], device: Any) -> dict[str, Any]:
    """The step's batch on `device`; `encoded` keeps each item's tokens, so an item is tokenized once per run."""
    chosen = batch_indices(step, n_items=len(items), batch_size=config.batch_size, seed=config.seed)
    for index in chosen:
        if index not in encoded:
            encoded[index] = encode(tokenizer, items[index])
    batch = collate([encoded[i] for i in chosen], pad_id=tokenizer.pad_token_id)
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def _update(model: Any, optimizer: Any, params: list[Any], batch: dict[str, Any], *, lr: float) -> float:
    """One AdamW step at `lr` on the batch's price loss, gradients clipped; returns the loss."""
    import torch

    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = price_loss(model, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _compute_dtype(device: str | None) -> str:
    """fp32 on CPU, pinned (not probed) so a resumed run computes as the first did; on CUDA the GPU's half type."""
    from pricer.engines.models import choose_compute_dtype, resolve_device

    resolved = resolve_device(device)
    return choose_compute_dtype(resolved) if resolved.startswith("cuda") else "float32"


def _check_same_run(out: Path, stored: dict[str, Any], now: dict[str, Any]) -> None:
    __tracebackhide__ = True
    flat_stored, flat_now = _flatten(stored), _flatten(now)
    changed = [f"{k}: {flat_stored.get(k)!r} -> {flat_now.get(k)!r}" for k in sorted(set(flat_stored) | set(flat_now))
               if flat_stored.get(k) != flat_now.get(k)]
    if changed:
        raise OptionError(f"{out / CHECKPOINT}: made by a different run ({'; '.join(changed)}); pass the same options "
                          f"and data to resume it, or delete {out / CHECKPOINT} to start over")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def _with_lora(loaded: LoadedModel, config: FinetuneConfig):  # -> peft.PeftModel
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    model = loaded.model
    lora = LoraConfig(r=config.rank, lora_alpha=config.lora_alpha, lora_dropout=0.0,  # no dropout: exact resume
                      target_modules=list(TARGET_MODULES), task_type="CAUSAL_LM", bias="none")
    with warnings.catch_warnings():
        # peft 0.21 still asks transformers 5 for is_gradient_checkpointing; the FutureWarning is theirs to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        if config.bits == 4:
            # The QLoRA recipe: norms and embeddings in fp32 (a no-op when loaded in fp32), base frozen. No gradient
            # checkpointing: on CPU it trades the little memory a 135M model needs for a third more time.
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        torch.manual_seed(config.seed)  # LoRA's A matrices start random; B starts at zero
        return get_peft_model(model, lora)


def _without_lora(model: Any, loaded: LoadedModel) -> None:
    """Give a lent base back as it came: LoRA layers removed, eval mode."""
    with contextlib.suppress(Exception):  # a run that failed half-way may leave nothing to unload
        model.unload().eval()
        loaded.model.eval()


def _adapter_state(model: Any) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    return {name: tensor.detach().float() for name, tensor in get_peft_model_state_dict(model).items()}


def _save_adapter(out: Path, model: Any, *, loaded: LoadedModel, config: FinetuneConfig, made_with: dict[str, Any],
                  losses: Sequence[float], tokens: int, seconds: float, data_source: str | None) -> int:
    """adapter_model.safetensors, adapter_config.json and pricer-adapter.json (with the base's hash), each atomic."""
    import tempfile

    import torch
    from safetensors.torch import save

    from pricer.store.fingerprint import machine_info, today
    from pricer.engines.models import DEFAULT_NAME, QUANTIZATION, library_versions

    weights = save({k: v.to(getattr(torch, SAVE_DTYPE)).contiguous() for k, v in _adapter_state(model).items()},
                   metadata={"format": "pt"})
    atomic_write_bytes(out / ADAPTER_WEIGHTS, weights)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        model.peft_config["default"].save_pretrained(scratch)
        adapter_config = read_json(Path(scratch) / ADAPTER_CONFIG, error=ModelError)
    # The local cache path peft records means nothing elsewhere; the record's hash says exactly which base it fits.
    adapter_config["base_model_name_or_path"] = (DEFAULT_NAME if config.model == DEFAULT_MODEL else config.model)
    adapter_config["inference_mode"] = True
    write_json(out / ADAPTER_CONFIG, adapter_config)
    versions = dict(library_versions()) | {"pricer": importlib.metadata.version("pricer")}
    record = {
        "format": RECORD_FORMAT,
        "base_model": loaded.info.name,
        ADAPTER_BASE_SHA_KEY: loaded.info.weights_sha256,
        "bits": config.bits,
        "quantization": QUANTIZATION[config.bits],
        "compute_dtype": loaded.info.compute_dtype,
        "device": loaded.info.device,
        "threads": torch.get_num_threads(),  # tokens/s depends on it; OMP_NUM_THREADS=1 wins on a shared CPU
        "data": {"source": Path(data_source).name if data_source and Path(data_source).exists() else data_source,
                 "n_items": made_with["n_items"], "sha256": made_with["data_sha256"]},
        "hyperparameters": config.hyperparameters(),
        "weights_dtype": SAVE_DTYPE,
        "steps": len(losses),
        "seconds": round(seconds, 1),
        "tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "loss": {"first": losses[0], "last": losses[-1], "by_step": [round(x, 4) for x in losses]},
        "versions": versions,
        "machine": machine_info(),
        "date": today(),
    }
    write_json(out / RECORD, record)  # last: its presence says the adapter is complete
    return len(weights)


# ---------------------------------------------------------------- reading a record


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterRecord:
    """The parts of pricer-adapter.json that reports show."""

    path: Path
    base_model: str
    base_model_sha256: str
    bits: int
    steps: int
    seconds: float
    tokens_per_second: float | None
    hyperparameters: dict[str, Any]


def read_record(folder: Path) -> AdapterRecord:
    """Read an adapter's pricer-adapter.json, checking the fields reports use."""
    path = Path(folder) / RECORD
    raw = read_json(path, error=ModelError)
    if raw.get("format") != RECORD_FORMAT:
        raise ModelError(f"{path}: format {raw.get('format')!r} is not {RECORD_FORMAT}")
    checks = {"base_model": str, ADAPTER_BASE_SHA_KEY: str, "bits": int, "steps": int, "seconds": (int, float),
              "hyperparameters": dict}
    for name, kind in checks.items():
        if not isinstance(raw.get(name), kind) or isinstance(raw.get(name), bool):
            raise ModelError(f"{path}: field {name!r} is {raw.get(name)!r}")
    speed = raw.get("tokens_per_second")
    return AdapterRecord(path=path, base_model=raw["base_model"], base_model_sha256=raw[ADAPTER_BASE_SHA_KEY],
                         bits=raw["bits"], steps=raw["steps"], seconds=float(raw["seconds"]),
                         tokens_per_second=float(speed) if isinstance(speed, (int, float)) else None,
                         hyperparameters=raw["hyperparameters"])


def describe(result: FinetuneResult) -> Iterator[str]:
    """The lines `pricer finetune` prints at the end."""
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    yield (f"trained {result.steps} steps{resumed} in {result.seconds:,.0f} s: {result.tokens:,} tokens, "
           f"{result.tokens_per_second:,.1f} tokens/s; price loss {result.first_loss:.3f} -> {result.last_loss:.3f}")
    yield f"wrote {result.out / ADAPTER_WEIGHTS} ({result.adapter_bytes / 1e6:.1f} MB), {ADAPTER_CONFIG} and {RECORD}"

