"""A bit width's precision: its quantization config, and the dtypes its weights are held and run in on a device.

`quant_config(bits)` is the only place a bit width becomes a quantization config.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pricer.engines.device import torch_dtype
from pricer.engines.widths import BITS
from pricer.errors import ModelError, OptionError

QUANTIZATION = {4: "nf4-double-quant", 8: "llm.int8", 16: "none", 32: "none"}


def bits_message(bits: object) -> str:
    """The error for a width that is not one of BITS."""
    return f"bits: '{bits}' is not one of {', '.join(map(str, BITS))}"


def quant_config(bits: int, *, compute_dtype: Any):  # -> BitsAndBytesConfig | None
    """The bitsandbytes config for a bit width: NF4 + double quant at 4, LLM.int8 at 8, None at 16 and 32."""
    if bits not in BITS or isinstance(bits, bool):
        raise OptionError(bits_message(bits))
    if bits in (16, 32):
        return None
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch_dtype(compute_dtype),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Precision:
    """How a width is held and run: the dtype passed to from_pretrained, what weights are rounded to, matmul dtype."""

    load_dtype: str  # dtype of the modules bitsandbytes does not quantize (norms, embeddings, lm_head)
    weights_dtype: str  # what the linear weights carry: nf4, int8, or the float type they were rounded to
    compute_dtype: str


def precision_for(bits: int, *, device: str, compute_dtype: str) -> Precision:
    """The dtypes a width uses on a device, given the chosen compute dtype."""
    on_cuda = device.startswith("cuda")
    if bits == 32:
        return Precision(load_dtype="float32", weights_dtype="float32", compute_dtype="float32")
    if bits == 16:
        # 16 bits means half-precision weights. Where half compute is slow (most CPUs without AVX512-BF16),
        # the weights keep their bf16 rounding but run upcast to fp32.
        if compute_dtype in ("bfloat16", "float16"):
            half = compute_dtype
        else:
            import torch

            half = "float16" if on_cuda and not torch.cuda.is_bf16_supported() else "bfloat16"
        return Precision(load_dtype=half, weights_dtype=half, compute_dtype=compute_dtype)
    if bits == 8:
        # LLM.int8 runs its matmuls in int8 with fp16 outliers whatever the input dtype. On CPU the other modules
        # stay fp32: fp16 there makes CPU matmuls ~300x slower.
        other = "float16" if on_cuda else "float32"
        return Precision(load_dtype=other, weights_dtype="int8", compute_dtype=other)
    if bits == 4:
        return Precision(load_dtype=compute_dtype, weights_dtype="nf4", compute_dtype=compute_dtype)
    raise ModelError(bits_message(bits))
