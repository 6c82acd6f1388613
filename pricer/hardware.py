"""Hardware classes: which machines give the same greedy decodes, so a baseline is compared like with like."""

from __future__ import annotations

import re
from pathlib import Path

# Greedy decodes of one model differ by device and by the dtype matmuls run in (an H100 changed 41-104 of 250
# guesses at 4/8/16 bits; an AVX2-only CPU computing in fp32 changed the base 4-bit Error from $1,098.70 to
# $264.48 against bf16 on an AVX512-BF16 CPU). Both are in a class's name; the batching policy a baseline was
# made with is kept in the baseline itself and reproduced when gating.
CLASS_PATTERN = re.compile(r"^(cpu|cuda)-(float32|bfloat16|float16)$")


def class_name(device: str, compute_dtype: str) -> str:
    """`cpu-float32`, `cpu-bfloat16`, `cuda-bfloat16`...: the device kind and its preferred compute dtype."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return f"{kind}-{compute_dtype}"


def this_class(device: str | None = None) -> str:
    """This machine's class for `device` (default: cuda when available): what 4- and 16-bit widths compute in."""
    from pricer.models import choose_compute_dtype, resolve_device

    device = resolve_device(device)
    return class_name(device, choose_compute_dtype(device))


def stored_classes(model_folder: Path, width: str) -> list[str]:
    """The classes that hold a baseline of this width in a model's baseline folder."""
    if not model_folder.is_dir():
        return []
    return sorted(p.parent.name for p in model_folder.glob(f"*/{width}.json") if CLASS_PATTERN.match(p.parent.name))
