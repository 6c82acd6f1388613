"""What one training step is made of: the target text, the step's items, its learning rate, the batch and its loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from pricer.task.items import Item


def target_text(price: float) -> str:
    """What the model learns to write after "Price is $": the course's whole dollars, e.g. 20.95 -> "21.00"."""
    return f"{round(price)}.00"  # Python rounds halves to even, as the course's str(round(price)) did


def batch_indices(step: int, *, n_items: int, batch_size: int, seed: int) -> list[int]:
    """The items of a 0-based step: a seeded permutation per epoch, so any step is known without replaying others."""
    import numpy as np

    indices = []
    for position in range(step * batch_size, (step + 1) * batch_size):
        epoch, offset = divmod(position, n_items)
        indices.append(int(np.random.default_rng([seed, epoch]).permutation(n_items)[offset]))
    return indices


def lr_at(step: int, *, lr: float, steps: int, warmup_steps: int) -> float:
    """Learning rate of a 0-based step: linear warm-up, then cosine decay to 0 at the last step."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(steps - warmup_steps, 1)
    return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup_steps) / span))


def encode(tokenizer: Any, item: Item) -> tuple[list[int], list[int]]:
    """(prompt ids exactly as prediction tokenizes them, price ids + EOS): the loss is on the second part only."""
    prompt = tokenizer(item.prompt)["input_ids"]
    price = tokenizer(target_text(item.price), add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return prompt, price


def collate(pairs: Sequence[tuple[list[int], list[int]]], *, pad_id: int):  # -> dict of tensors and `keep`
    """Left-pad as prediction does, so every price ends the row and only the last `keep` logits are needed."""
    import torch

    rows = [prompt + price for prompt, price in pairs]
    width = max(map(len, rows))
    keep = max(len(price) for _, price in pairs) + 1  # logits at the `keep` last positions predict every price token
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), keep - 1), -100, dtype=torch.long)
    for row, ((_, price), ids) in enumerate(zip(pairs, rows)):
        input_ids[row, width - len(ids):] = torch.tensor(ids)
        attention_mask[row, width - len(ids):] = 1
        labels[row, keep - 1 - len(price):] = torch.tensor(price)
    # Positions count real tokens only, as generate() computes them under left padding.
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
            "labels": labels, "keep": keep}


def price_loss(model: Any, batch: dict[str, Any]):  # -> scalar tensor
    """Mean cross-entropy over the price tokens of the batch."""
    import torch

    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch["position_ids"], logits_to_keep=batch["keep"], use_cache=False).logits
    predicting = logits[:, :-1, :].float()  # the last position predicts past the end of the row
    return torch.nn.functional.cross_entropy(predicting.reshape(-1, predicting.shape[-1]),
                                             batch["labels"].reshape(-1).to(predicting.device), ignore_index=-100)
