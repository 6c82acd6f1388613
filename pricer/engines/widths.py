"""The bit widths a model is gated at and their names ("4bit"...), declared once."""

from __future__ import annotations

BITS = (4, 8, 16, 32)
REFERENCE = "32bit"  # the quantization ladder's reference: full precision


def name(bits: int) -> str:
    return f"{bits}bit"


NAMES = tuple(name(b) for b in BITS)
ORDER = {width: i for i, width in enumerate(NAMES)}  # sort key: 4bit before 16bit, unlike sorting the names


def bits_of(width: str) -> int:
    return int(width.removesuffix("bit"))
