"""Run one predictor over the items and score it: the single path the CLI and the gate share."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from pricer.engines.predict import Prediction, Predictor
from pricer.task.items import Item
from pricer.task.metrics import ItemScore, Metrics, score_items, summarize


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """A predictor's predictions on the items, their scores and how long they took."""

    name: str
    items: tuple[Item, ...]
    predictions: tuple[Prediction, ...]
    scores: tuple[ItemScore, ...]
    metrics: Metrics
    seconds: float

    @property
    def seconds_per_item(self) -> float:
        return self.seconds / len(self.items)


def evaluate(predictor: Predictor, items: Sequence[Item]) -> RunResult:
    """Predict every item once, then score the guesses the course's way."""
    start = time.perf_counter()
    predictions = predictor.predict(items)
    seconds = time.perf_counter() - start
    return score_run(predictor.name, items, predictions, seconds=seconds)


def score_run(name: str, items: Sequence[Item], predictions: Sequence[Prediction], *, seconds: float = 0.0) -> RunResult:
    """Score predictions made elsewhere (a stored baseline, a planted regression)."""
    if len(predictions) != len(items):
        raise ValueError(f"{name}: {len(predictions)} predictions for {len(items)} items")
    scores = score_items([p.guess for p in predictions], [item.price for item in items])
    metrics = summarize(scores, unparsed=sum(not p.parsed for p in predictions))
    return RunResult(
        name=name,
        items=tuple(items),
        predictions=tuple(predictions),
        scores=tuple(scores),
        metrics=metrics,
        seconds=seconds,
    )
