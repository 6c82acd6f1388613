"""Predictions: the Predictor protocol every model plugs into, and batched deterministic LLM generation."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

from pricer.data import Item
from pricer.errors import OptionError
from pricer.models import LoadedModel
from pricer.prompts import parse_price


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


# SmolLM2's tokenizer splits numbers into single digits: "999.99" is 6 tokens and "1,299.99" is 8. The course's
# ~3-5 tokens (Llama 3 packs up to three digits in a token) would cut "1,299.99" to "1,29" and parse it as 129,
# so 8 tokens: any price below $10,000 with cents. Cheap: at 32 bits on one CPU core a batch-8 decode step took
# ~0.13 s against ~4.7 s for the batch's prompts (prefill).
DEFAULT_MAX_NEW_TOKENS = 8
# Measured at 32 bits on one CPU core: batch 16 took 0.655 s/item against 0.62 at batch 8 (more padding, and the
# decode steps batching amortizes are already ~15% of the time).
DEFAULT_BATCH_SIZE = 8
# bitsandbytes logs this through `logging` on every LLM.int8 matmul whose input is not fp16 (fp32 on CPU): noise.
_INT8_CAST_MESSAGE = "MatMul8bitLt: inputs will be cast from"
_INT8_LOGGER = "bitsandbytes.autograd._functions"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodingPolicy:
    """Everything about generation that decides completions; recorded in fingerprints."""

    batch_size: int
    max_new_tokens: int
    order: str = "input"  # batches follow the items' order; sorting by length would change LLM.int8 results
    padding: str = "left"
    do_sample: bool = False  # greedy
    num_beams: int = 1
    chat_template: bool = False  # the course feeds the raw prompt to the Instruct model, so do we
    skip_special_tokens: bool = True

    def to_dict(self) -> dict[str, object]:
        """Plain JSON types."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class _DropInt8CastWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(_INT8_CAST_MESSAGE)


@contextlib.contextmanager
def _quiet_int8_casts() -> Iterator[None]:
    """Silence only bitsandbytes' per-call cast warning, only while predicting."""
    logger, drop = logging.getLogger(_INT8_LOGGER), _DropInt8CastWarning()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


class LLMPredictor:
    """Greedy, batched, left-padded generation over items in input order; the same inputs give the same completions."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        progress: bool | None = None,
    ) -> None:
        if batch_size < 1:
            raise OptionError(f"batch_size: '{batch_size}' is not a positive integer")
        if max_new_tokens < 1:
            raise OptionError(f"max_new_tokens: '{max_new_tokens}' is not a positive integer")
        self.loaded = loaded
        self.policy = DecodingPolicy(batch_size=batch_size, max_new_tokens=max_new_tokens)
        self.name = f"{loaded.info.name} {loaded.info.bits}bit"
        self.progress = progress  # None: a progress bar only when stderr is a terminal

    def predict(self, items: Sequence[Item]) -> list[Prediction]:
        """One Prediction per item, in order; guess 0.0 and parsed=False when no price can be read."""
        predictions = []
        for completion in self.complete([item.prompt for item in items]):
            price = parse_price(completion)
            predictions.append(Prediction(guess=price or 0.0, completion=completion, parsed=price is not None))
        return predictions

    def complete(self, prompts: Sequence[str]) -> list[str]:
        """The raw completion of each prompt, batched in the given order."""
        import torch
        from tqdm.auto import tqdm

        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        config = self._generation_config()
        size = self.policy.batch_size
        batches = [list(prompts[i : i + size]) for i in range(0, len(prompts), size)]
        show = sys.stderr.isatty() if self.progress is None else self.progress
        completions: list[str] = []
        with torch.inference_mode(), _quiet_int8_casts():
            for batch in tqdm(batches, desc=self.name, unit="batch", disable=not show or not batches):
                encoded = tokenizer(batch, return_tensors="pt", padding=True, padding_side=self.policy.padding)
                encoded = encoded.to(model.device)
                output = model.generate(**encoded, generation_config=config)
                new = output[:, encoded["input_ids"].shape[1] :]  # left padding: every prompt ends at the same column
                completions += tokenizer.batch_decode(new, skip_special_tokens=self.policy.skip_special_tokens)
        return completions

    def _generation_config(self):  # -> transformers.GenerationConfig
        from transformers import GenerationConfig

        tokenizer = self.loaded.tokenizer
        # A fresh config, not the model's: no sampling fields, so no temperature/top_p warnings under greedy.
        return GenerationConfig(
            max_new_tokens=self.policy.max_new_tokens,
            do_sample=self.policy.do_sample,
            num_beams=self.policy.num_beams,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )


def predict_one_at_a_time(
    loaded: LoadedModel,
    items: Sequence[Item],
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    progress: bool | None = None,
) -> list[Prediction]:
    """The course's way: one generate call per item, no padding (for comparison with the batched path)."""
    return LLMPredictor(loaded, batch_size=1, max_new_tokens=max_new_tokens, progress=progress).predict(items)
