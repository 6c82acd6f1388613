"""What decides a fine-tuning run (its config, and the defaults with where they were measured), and what it reports."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pricer.engines.device import DTYPES
from pricer.engines.transformers.default_model import DEFAULT_MODEL
from pricer.errors import OptionError

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


class StopTraining(Exception):
    """Raised by an on_step callback to stop a run where it is, as a kill would."""
