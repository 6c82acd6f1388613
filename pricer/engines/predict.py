"""Predictions: the Predictor protocol every model plugs into, and batched deterministic LLM generation."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol

from pricer.engines.transformers.loading import LoadedModel
from pricer.errors import OptionError
from pricer.task.items import Item
from pricer.task.prompts import parse_price


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
# decode steps batching amortizes are already ~15% of the time). Used when a batch size is asked for.
DEFAULT_BATCH_SIZE = 8
# Token-budget batching: prompts sorted by length fill a batch up to this many padded prompt tokens. The course's
# prompts are 153-239 SmolLM2 tokens (median 194), so a CPU batch holds ~8 prompts, the size measured fastest
# above, with almost no padding (input-order batches of 8 pad 7%). A GPU sits idle at batch 8 (0.12 s/item on an
# H100 against 0.002-0.016 at 256): there one budget takes the whole 250-item sample (48,856 tokens) in 2 batches.
CPU_TOKEN_BUDGET = 1536
GPU_TOKEN_BUDGET = 32768


def default_token_budget(device: str) -> int:
    """The padded-token budget per batch for a device kind."""
    return GPU_TOKEN_BUDGET if device.startswith("cuda") else CPU_TOKEN_BUDGET


def token_budget_batches(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices grouped into batches: longest prompts first, each batch's rows x its longest prompt <= budget
    (a prompt longer than the budget gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))  # ties keep input order: deterministic
    batches: list[list[int]] = []
    for i in order:
        if batches and (len(batches[-1]) + 1) * lengths[batches[-1][0]] <= budget:
            batches[-1].append(i)
        else:
            batches.append([i])
    return batches


# bitsandbytes logs this through `logging` on every LLM.int8 matmul whose input is not fp16 (fp32 on CPU): noise.
_INT8_CAST_MESSAGE = "MatMul8bitLt: inputs will be cast from"
_INT8_LOGGER = "bitsandbytes.autograd._functions"


@dataclass(frozen=True, slots=True, kw_only=True)
class DecodingPolicy:
    """Everything about generation that decides completions; recorded in fingerprints."""

    batch_size: int | None  # fixed-size batches in input order, or None for a token budget
    max_new_tokens: int
    token_budget: int | None = None  # padded prompt tokens per batch, prompts sorted by length
    order: str = "input"  # "input" or "length"; batch composition can flip greedy decodes, so it is recorded
    padding: str = "left"
    do_sample: bool = False  # greedy
    num_beams: int = 1
    chat_template: bool = False  # the course feeds the raw prompt to the Instruct model, so do we
    skip_special_tokens: bool = True

    def to_dict(self) -> dict[str, object]:
        """Plain JSON types."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def batching_from(cls, context: Mapping[str, object], *, max_new_tokens: int) -> DecodingPolicy | None:
        """The batching a stored fingerprint context records, or None if it records none we can reproduce.
        Baselines made before token budgets hold only `batch_size` (fixed batches in input order)."""
        budget, size = context.get("token_budget"), context.get("batch_size")
        if isinstance(budget, int) and not isinstance(budget, bool) and budget > 0:
            return cls(batch_size=None, token_budget=budget, order="length", max_new_tokens=max_new_tokens)
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return cls(batch_size=size, max_new_tokens=max_new_tokens)
        return None


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
        batch_size: int | None = None,
        token_budget: int | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        progress: bool | None = None,
    ) -> None:
        """A `batch_size` gives fixed batches in input order; otherwise prompts sorted by length fill batches up to
        `token_budget` padded tokens (default: the device's)."""
        for name, value in (("batch_size", batch_size), ("token_budget", token_budget)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise OptionError(f"{name}: '{value}' is not a positive integer")
        if batch_size is not None and token_budget is not None:
            raise OptionError("batch_size and token_budget: give one, not both")
        if max_new_tokens < 1:
            raise OptionError(f"max_new_tokens: '{max_new_tokens}' is not a positive integer")
        self.loaded = loaded
        if batch_size is not None:
            self.policy = DecodingPolicy(batch_size=batch_size, max_new_tokens=max_new_tokens)
        else:
            budget = token_budget or default_token_budget(loaded.info.device)
            self.policy = DecodingPolicy(batch_size=None, token_budget=budget, order="length",
                                         max_new_tokens=max_new_tokens)
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
        """The raw completion of each prompt, in the prompts' order whatever order the batches ran in."""
        import torch
        from tqdm.auto import tqdm

        model, tokenizer = self.loaded.model, self.loaded.tokenizer
        config = self._generation_config()
        show = sys.stderr.isatty() if self.progress is None else self.progress
        completions: list[str | None] = [None] * len(prompts)
        batches = self.batches(prompts)
        with torch.inference_mode(), _quiet_int8_casts():
            for batch in tqdm(batches, desc=self.name, unit="batch", disable=not show or not batches):
                encoded = tokenizer([prompts[i] for i in batch], return_tensors="pt", padding=True,
                                    padding_side=self.policy.padding)
                encoded = encoded.to(model.device)
                output = model.generate(**encoded, generation_config=config)
                new = output[:, encoded["input_ids"].shape[1] :]  # left padding: every prompt ends at the same column
                texts = tokenizer.batch_decode(new, skip_special_tokens=self.policy.skip_special_tokens)
                for i, text in zip(batch, texts):
                    completions[i] = text
        return completions  # type: ignore[return-value]

    def batches(self, prompts: Sequence[str]) -> list[list[int]]:
        """The prompts' indices, batch by batch, as this policy groups them."""
        size = self.policy.batch_size
        if size is not None:
            return [list(range(i, min(i + size, len(prompts)))) for i in range(0, len(prompts), size)]
        lengths = [len(ids) for ids in self.loaded.tokenizer(list(prompts))["input_ids"]] if prompts else []
        return token_budget_batches(lengths, self.policy.token_budget or 1)

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
