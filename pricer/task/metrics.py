"""The course's scores (Error, RMSLE, Hits, per-item colour) plus MSE, r² and a 95% CI of the Error."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The course's colour bands: an absolute dollar bound or a share of the truth, whichever is kinder.
GREEN_DOLLARS, GREEN_SHARE = 40.0, 0.2
ORANGE_DOLLARS, ORANGE_SHARE = 80.0, 0.4
CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemScore:
    """How far one guess is from its truth."""

    guess: float
    truth: float
    error: float  # absolute error in dollars
    sle: float  # squared log error, log(x + 1) as the course takes it
    color: str  # "green", "orange" or "red"


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """A run's scores over n items."""

    n: int
    error: float  # mean absolute error, the course's "Error"
    error_ci: tuple[float, float]  # 95% t-interval of the mean absolute error
    rmsle: float
    hits: float  # share of green items, 0..1
    mse: float
    r2: float
    unparsed: int  # completions with no number in them, scored as a $0 guess

    def title(self, name: str) -> str:
        """The course's title line: `NAME Error=$X RMSLE=Y Hits=Z%`."""
        return f"{name} Error=${self.error:,.2f} RMSLE={self.rmsle:,.2f} Hits={self.hits * 100:.1f}%"


def color_for(error: float, truth: float) -> str:
    """The course's colour of an item: green is a hit."""
    if error < GREEN_DOLLARS or error / truth < GREEN_SHARE:
        return "green"
    if error < ORANGE_DOLLARS or error / truth < ORANGE_SHARE:
        return "orange"
    return "red"


def score_item(guess: float, truth: float) -> ItemScore:
    """Score one guess the way the course's Tester does."""
    if not math.isfinite(guess) or guess < 0:
        raise ValueError(f"guess {guess!r} is not a non-negative number")
    error = abs(guess - truth)
    sle = (math.log(truth + 1) - math.log(guess + 1)) ** 2
    return ItemScore(guess=guess, truth=truth, error=error, sle=sle, color=color_for(error, truth))


def score_items(guesses: Sequence[float], truths: Sequence[float]) -> list[ItemScore]:
    if len(guesses) != len(truths):
        raise ValueError(f"{len(guesses)} guesses for {len(truths)} items")
    return [score_item(g, t) for g, t in zip(guesses, truths)]


def mean_ci(values: Sequence[float], *, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t confidence interval of the mean; a single value has no spread to measure."""
    import numpy as np
    from scipy import stats

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2 or float(data.std()) == 0.0:
        return (mean, mean)
    low, high = stats.t.interval(confidence, len(data) - 1, loc=mean, scale=stats.sem(data))
    return (float(low), float(high))


def summarize(scores: Sequence[ItemScore], *, unparsed: int = 0) -> Metrics:
    """The run's metrics from its per-item scores."""
    from sklearn.metrics import mean_squared_error, r2_score

    if not scores:
        raise ValueError("no items to score")
    errors = [s.error for s in scores]
    truths = [s.truth for s in scores]
    guesses = [s.guess for s in scores]
    n = len(scores)
    return Metrics(
        n=n,
        error=math.fsum(errors) / n,
        error_ci=mean_ci(errors),
        rmsle=math.sqrt(math.fsum(s.sle for s in scores) / n),
        hits=sum(s.color == "green" for s in scores) / n,
        mse=float(mean_squared_error(truths, guesses)),
        r2=float(r2_score(truths, guesses)) if n > 1 else float("nan"),
        unparsed=unparsed,
    )
