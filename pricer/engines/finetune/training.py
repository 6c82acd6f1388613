"""QLoRA fine-tuning on the train split: LoRA on a quantized base, loss on the price only, exact resume.

A hand-rolled loop (AdamW, seeded batch order, no dropout) rather than HF Trainer: a checkpoint is then just the
LoRA weights, AdamW's moments and the step, and a resumed run repeats an uninterrupted one step for step.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricer.engines.finetune.adapter import RECORD, adapter_state, save_adapter
from pricer.engines.finetune.checkpoints import (CHECKPOINT, Checkpoint, load_checkpoint, optimizer_tensors,
                                                 restore_optimizer, save_checkpoint)
from pricer.engines.finetune.config import MAX_GRAD_NORM, TARGET_MODULES, FinetuneConfig, FinetuneResult
from pricer.engines.finetune.recipe import batch_indices, collate, encode, lr_at, price_loss
from pricer.engines.transformers.loading import LoadedModel, load_model
from pricer.errors import ModelError, OptionError
from pricer.task.items import Item, items_digest


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
        adapter_bytes = save_adapter(out, model, loaded=loaded, config=config, made_with=made_with, losses=run.losses,
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
                    step=run.step, adapter=adapter_state(model), optimizer=optimizer_tensors(optimizer),
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
    restore_optimizer(optimizer, existing.optimizer)
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
    from pricer.engines.device import choose_compute_dtype, resolve_device

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
