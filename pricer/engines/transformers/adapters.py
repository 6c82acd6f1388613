"""LoRA adapters on a loaded model: checked to fit the base they were trained on, then attached for inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pricer.engines.transformers.hashes import sha256_file
from pricer.engines.transformers.sources import short_names
from pricer.errors import ModelError
from pricer.files import read_json

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_RECORD = "pricer-adapter.json"  # pricer's own note of how an adapter was made; peft never reads it
ADAPTER_FILES = (ADAPTER_CONFIG,)  # beside the weights, what decides its answers: lora_alpha, r, target modules
ADAPTER_BASE_SHA_KEY = "base_model_sha256"  # in the record: the exact base weights the adapter was trained on


def check_adapter(adapter: Path, *, base: tuple[str, Path, str, frozenset[str]]) -> tuple[Path, str]:
    """The adapter's folder and weights hash, after checking it was made for this base model."""
    name, folder, weights_sha, aliases = base
    adapter = adapter.expanduser().resolve()
    if not adapter.is_dir():
        raise ModelError(f"{adapter}: adapter folder not found")
    config = read_json(adapter / ADAPTER_CONFIG, error=ModelError)
    weights = adapter / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ModelError(f"{adapter}: no {ADAPTER_WEIGHTS} (pricer loads safetensors adapters only)")
    made_for = config.get("base_model_name_or_path")
    # The hash sits in pricer's record, not in adapter_config.json, where peft warns about keys it doesn't know.
    record = adapter / ADAPTER_RECORD
    made_for_sha = read_json(record, error=ModelError).get(ADAPTER_BASE_SHA_KEY) if record.is_file() else None
    # A recorded hash is exact; otherwise names are compared by their last path part, so an adapter trained on
    # /somewhere/SmolLM2-135M-Instruct fits the hub's HuggingFaceTB/SmolLM2-135M-Instruct.
    if isinstance(made_for_sha, str):
        if made_for_sha != weights_sha:
            raise ModelError(
                f"{adapter}: adapter made for base weights sha256 {made_for_sha[:16]}… ({made_for!r}), "
                f"but the loaded base {name!r} ({folder}) has sha256 {weights_sha[:16]}…; pass the model it was trained on"
            )
    elif isinstance(made_for, str) and made_for and short_names(made_for).isdisjoint(aliases):
        raise ModelError(
            f"{adapter}: adapter made for base model {made_for!r}, but the loaded base is {name!r} ({folder}); "
            "pass the model it was trained on"
        )
    return adapter, sha256_file(weights)


def attach_adapter(loaded: Any, adapter: Path):  # -> peft.PeftModel
    """The model with the (already checked) LoRA adapter in `adapter` attached for inference."""
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():
        # peft 0.21 still asks transformers 5 for is_gradient_checkpointing; the FutureWarning is theirs to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return PeftModel.from_pretrained(loaded, adapter, is_trainable=False)
