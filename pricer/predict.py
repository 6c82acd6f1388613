"""Predictions: the Predictor protocol every model plugs into, and batched deterministic LLM generation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pricer.data import Item


@dataclass(frozen=True, slots=True, kw_only=True)
class Prediction:
    """One item's guess; an LLM's raw completion is kept beside the price parsed from it."""

    guess: float  # 0.0 when nothing could be parsed, as the course scores it
    completion: str | None = None  # None for classic predictors, which produce no text
    parsed: bool = True


class Predictor(Protocol):
    """Anything that prices items: a classic model or an LLM at some bit width."""

    name: str

    def predict(self, items: Sequence[Item]) -> list[Prediction]: ...
