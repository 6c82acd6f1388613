"""The trained adapter as written (weights, peft config, pricer's record of how it was made); the record read back."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pricer.engines.device import machine_info
from pricer.engines.finetune.config import SAVE_DTYPE, FinetuneConfig, FinetuneResult
from pricer.engines.transformers.adapters import ADAPTER_BASE_SHA_KEY, ADAPTER_CONFIG, ADAPTER_RECORD, ADAPTER_WEIGHTS
from pricer.engines.transformers.default_model import DEFAULT_MODEL, DEFAULT_NAME
from pricer.engines.transformers.loading import LoadedModel, library_versions
from pricer.engines.transformers.precision import QUANTIZATION
from pricer.errors import ModelError
from pricer.files import atomic_write_bytes, read_json, today, write_json

RECORD = ADAPTER_RECORD  # how the adapter was made: base and data hashes, hyper-parameters, versions, speed
RECORD_FORMAT = 1


def adapter_state(model: Any) -> dict[str, Any]:
    """The LoRA weights of a peft model by name, as fp32 tensors."""
    from peft import get_peft_model_state_dict

    return {name: tensor.detach().float() for name, tensor in get_peft_model_state_dict(model).items()}


def save_adapter(out: Path, model: Any, *, loaded: LoadedModel, config: FinetuneConfig, made_with: dict[str, Any],
                 losses: Sequence[float], tokens: int, seconds: float, data_source: str | None) -> int:
    """adapter_model.safetensors, adapter_config.json and pricer-adapter.json (with the base's hash), each atomic."""
    import tempfile

    import torch
    from safetensors.torch import save

    weights = save({k: v.to(getattr(torch, SAVE_DTYPE)).contiguous() for k, v in adapter_state(model).items()},
                   metadata={"format": "pt"})
    atomic_write_bytes(out / ADAPTER_WEIGHTS, weights)
    with tempfile.TemporaryDirectory(dir=out) as scratch:
        model.peft_config["default"].save_pretrained(scratch)
        adapter_config = read_json(Path(scratch) / ADAPTER_CONFIG, error=ModelError)
    # The local cache path peft records means nothing elsewhere; the record's hash says exactly which base it fits.
    adapter_config["base_model_name_or_path"] = (DEFAULT_NAME if config.model == DEFAULT_MODEL else config.model)
    adapter_config["inference_mode"] = True
    write_json(out / ADAPTER_CONFIG, adapter_config)
    versions = dict(library_versions()) | {"pricer": importlib.metadata.version("pricer")}
    record = {
        "format": RECORD_FORMAT,
        "base_model": loaded.info.name,
        ADAPTER_BASE_SHA_KEY: loaded.info.weights_sha256,
        "bits": config.bits,
        "quantization": QUANTIZATION[config.bits],
        "compute_dtype": loaded.info.compute_dtype,
        "device": loaded.info.device,
        "threads": torch.get_num_threads(),  # tokens/s depends on it; OMP_NUM_THREADS=1 wins on a shared CPU
        "data": {"source": Path(data_source).name if data_source and Path(data_source).exists() else data_source,
                 "n_items": made_with["n_items"], "sha256": made_with["data_sha256"]},
        "hyperparameters": config.hyperparameters(),
        "weights_dtype": SAVE_DTYPE,
        "steps": len(losses),
        "seconds": round(seconds, 1),
        "tokens": tokens,
        "tokens_per_second": round(tokens / seconds, 1) if seconds else None,
        "loss": {"first": losses[0], "last": losses[-1], "by_step": [round(x, 4) for x in losses]},
        "versions": versions,
        "machine": machine_info(),
        "date": today(),
    }
    write_json(out / RECORD, record)  # last: its presence says the adapter is complete
    return len(weights)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterRecord:
    """The parts of pricer-adapter.json that reports show."""

    path: Path
    base_model: str
    base_model_sha256: str
    bits: int
    steps: int
    seconds: float
    tokens_per_second: float | None
    hyperparameters: dict[str, Any]


def read_record(folder: Path) -> AdapterRecord:
    """Read an adapter's pricer-adapter.json, checking the fields reports use."""
    path = Path(folder) / RECORD
    raw = read_json(path, error=ModelError)
    if raw.get("format") != RECORD_FORMAT:
        raise ModelError(f"{path}: format {raw.get('format')!r} is not {RECORD_FORMAT}")
    checks = {"base_model": str, ADAPTER_BASE_SHA_KEY: str, "bits": int, "steps": int, "seconds": (int, float),
              "hyperparameters": dict}
    for name, kind in checks.items():
        if not isinstance(raw.get(name), kind) or isinstance(raw.get(name), bool):
            raise ModelError(f"{path}: field {name!r} is {raw.get(name)!r}")
    speed = raw.get("tokens_per_second")
    return AdapterRecord(path=path, base_model=raw["base_model"], base_model_sha256=raw[ADAPTER_BASE_SHA_KEY],
                         bits=raw["bits"], steps=raw["steps"], seconds=float(raw["seconds"]),
                         tokens_per_second=float(speed) if isinstance(speed, (int, float)) else None,
                         hyperparameters=raw["hyperparameters"])


def describe(result: FinetuneResult) -> Iterator[str]:
    """The lines `pricer finetune` prints at the end."""
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    yield (f"trained {result.steps} steps{resumed} in {result.seconds:,.0f} s: {result.tokens:,} tokens, "
           f"{result.tokens_per_second:,.1f} tokens/s; price loss {result.first_loss:.3f} -> {result.last_loss:.3f}")
    yield f"wrote {result.out / ADAPTER_WEIGHTS} ({result.adapter_bytes / 1e6:.1f} MB), {ADAPTER_CONFIG} and {RECORD}"
