"""Load a causal LM at a bit width (4, 8, 16, 32) on this machine, and record everything that decides its predictions."""

from __future__ import annotations

import gc
import importlib.metadata
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pricer.engines.device import choose_compute_dtype, resolve_device, torch_dtype
from pricer.engines.transformers.adapters import ADAPTER_FILES, attach_adapter, check_adapter
from pricer.engines.transformers.default_model import DEFAULT_MODEL, converted_weights_sha256
from pricer.engines.transformers.hashes import (ADAPTER_FILES_PREFIX, MODEL_FILES, MODEL_FILES_PREFIX, files_sha256,
                                                weights_sha256)
from pricer.engines.transformers.precision import QUANTIZATION, Precision, bits_message, precision_for, quant_config
from pricer.engines.transformers.sources import resolve_model
from pricer.engines.widths import BITS
from pricer.errors import ModelError


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelInfo:
    """Everything about a loaded model that decides its predictions."""

    name: str  # short display name, e.g. smollm2-135m-instruct
    model: str  # as asked: 'default', a hub id or a path
    path: str  # the local folder the weights were read from
    weights_sha256: str
    adapter: str | None
    adapter_sha256: str | None
    bits: int
    quantization: str  # nf4-double-quant, llm.int8, none
    load_dtype: str
    weights_dtype: str
    compute_dtype: str
    device: str  # cpu or cuda
    gpu_name: str | None
    parameter_bytes: int  # model.get_memory_footprint(): parameters and buffers
    versions: tuple[tuple[str, str | None], ...]  # (library, version or None when absent), sorted
    # The sha256 of every other file that decides an answer, keyed "model_files/config.json",
    # "adapter_files/adapter_config.json" (hashes.MODEL_FILES_PREFIX): weights alone miss a changed lora_alpha,
    # repetition_penalty or chat template.
    files: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for fingerprints."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["versions"] = dict(self.versions)
        out["files"] = dict(self.files)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        """The inverse of to_dict, checking every field is present and of the stored type."""
        expected = {f.name for f in fields(cls)}
        data = {"files": {}, **data}  # recorded before the files were hashed: none known
        missing, extra = expected - set(data), set(data) - expected
        if missing or extra:
            raise ModelError(f"model info: missing fields {sorted(missing)}, unknown fields {sorted(extra)}")
        versions = data["versions"]
        if not isinstance(versions, dict) or not all(isinstance(v, (str, type(None))) for v in versions.values()):
            raise ModelError(f"model info: versions {versions!r} is not a mapping of library to version")
        if not isinstance(data["bits"], int) or not isinstance(data["parameter_bytes"], int):
            raise ModelError("model info: bits and parameter_bytes must be integers")
        for name in ("name", "model", "path", "weights_sha256", "quantization", "load_dtype", "weights_dtype",
                     "compute_dtype", "device"):
            if not isinstance(data[name], str):
                raise ModelError(f"model info: {name} {data[name]!r} is not a string")
        files = data["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise ModelError(f"model info: files {files!r} is not a mapping of file to sha256")
        return cls(**{**data, "versions": tuple(sorted(versions.items())), "files": tuple(files.items())})


def library_versions() -> tuple[tuple[str, str | None], ...]:
    """Versions of the libraries whose kernels shape predictions."""
    found = []
    for name in ("bitsandbytes", "peft", "torch", "transformers"):
        try:
            found.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            found.append((name, None))
    return tuple(found)


class LoadedModel:
    """A model, its tokenizer and its ModelInfo; close() drops the model and frees its memory."""

    __slots__ = ("_model", "_tokenizer", "info")

    def __init__(self, *, model: Any, tokenizer: Any, info: ModelInfo) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self.info = info

    @property
    def model(self) -> Any:
        if self._model is None:
            raise ModelError(f"{self.info.name} {self.info.bits}bit was closed; load it again")
        return self._model

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise ModelError(f"{self.info.name} {self.info.bits}bit was closed; load it again")
        return self._tokenizer

    @property
    def closed(self) -> bool:
        return self._model is None

    def close(self) -> None:
        """Drop the model and tokenizer, collect garbage and empty the CUDA cache."""
        self._model = None
        self._tokenizer = None
        gc.collect()
        if self.info.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def load_model(
    model: str = DEFAULT_MODEL,
    *,
    bits: int,
    adapter: Path | None = None,
    device: str | None = None,
    compute_dtype: str | None = None,
) -> LoadedModel:
    """Load `model` ('default', a local folder or a hub id) at `bits`, optionally with a LoRA adapter, in eval mode."""
    if bits not in BITS or isinstance(bits, bool):
        raise ModelError(bits_message(bits))
    device = resolve_device(device)
    precision = precision_for(bits, device=device, compute_dtype=choose_compute_dtype(device, override=compute_dtype))
    if bits in (4, 8):
        _check_bitsandbytes(bits)
    folder, name, aliases = resolve_model(model)
    # The default's conversion stored its hash beside the weights: hashing 540 MB on every load would cost seconds.
    weights_sha = (converted_weights_sha256(folder) if model == DEFAULT_MODEL else None) or weights_sha256(folder)
    adapter_path, adapter_sha = (None, None) if adapter is None else check_adapter(
        Path(adapter), base=(name, folder, weights_sha, aliases)
    )

    loaded = _load_weights(folder, name=name, bits=bits, device=device, precision=precision)
    if adapter_path is not None:
        loaded = attach_adapter(loaded, adapter_path)
    loaded.eval()
    tokenizer = _load_tokenizer(folder)

    import torch

    info = ModelInfo(
        name=name + (f"+{adapter_path.name}" if adapter_path else ""),
        model=model,
        path=str(folder),
        weights_sha256=weights_sha,
        adapter=str(adapter_path) if adapter_path else None,
        adapter_sha256=adapter_sha,
        bits=bits,
        quantization=QUANTIZATION[bits],
        load_dtype=precision.load_dtype,
        weights_dtype=precision.weights_dtype,
        compute_dtype=precision.compute_dtype,
        device="cuda" if device.startswith("cuda") else "cpu",
        gpu_name=torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else None,
        parameter_bytes=int(loaded.get_memory_footprint()),
        versions=library_versions(),
        files=files_sha256(folder, MODEL_FILES, prefix=MODEL_FILES_PREFIX)
        + (files_sha256(adapter_path, ADAPTER_FILES, prefix=ADAPTER_FILES_PREFIX) if adapter_path else ()),
    )
    return LoadedModel(model=loaded, tokenizer=tokenizer, info=info)


def _load_weights(folder: Path, *, name: str, bits: int, device: str, precision: Precision):  # -> PreTrainedModel
    """The causal LM in `folder`, quantized to `bits` on `device`; a loading failure becomes a ModelError."""
    from transformers import AutoModelForCausalLM

    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=torch_dtype(precision.load_dtype),
            quantization_config=quant_config(bits, compute_dtype=precision.compute_dtype),
            device_map={"": device},
            trust_remote_code=False,
            use_safetensors=True,
        )
    except (ImportError, OSError, RuntimeError, NotImplementedError, ValueError) as exc:
        if bits in (4, 8):
            raise ModelError(
                f"bitsandbytes cannot load {name} at {bits} bits on {device} here ({type(exc).__name__}: {exc}); "
                "use bits 16 or 32, or a machine with a supported GPU"
            ) from exc
        raise ModelError(f"{folder}: cannot be loaded as a causal LM ({type(exc).__name__}: {exc})") from exc
    if precision.compute_dtype != precision.load_dtype and bits == 16:
        loaded = loaded.to(torch_dtype(precision.compute_dtype))  # keep the bf16 rounding, run in fp32
    return loaded


def _load_tokenizer(folder: Path):  # -> PreTrainedTokenizer
    """The model's tokenizer, padding on the left."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    tokenizer.padding_side = "left"  # decoder-only: new tokens must follow each prompt directly
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# bitsandbytes logs this at import on AVX512-BF16 CPUs without the optional `kernels` package, which fetches a
# kernel from the Hugging Face hub at run time; 4-bit works without it (only slower), so it is noise to a gate.
KERNELS_HINT = ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward")


def quiet_kernels_hint() -> None:
    """Drop bitsandbytes' "pip install kernels" log line (KERNELS_HINT), keeping its other messages."""
    import logging

    logging.getLogger(KERNELS_HINT[0]).addFilter(_not_kernels_hint)


def _not_kernels_hint(record) -> bool:  # record: logging.LogRecord
    return not str(record.msg).startswith(KERNELS_HINT[1])


quiet_kernels_hint()  # on import: models are loaded through this module, and bitsandbytes logs as it is imported


def _check_bitsandbytes(bits: int) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ModelError(f"{bits}-bit loading needs bitsandbytes ({exc}); pip install bitsandbytes, or use bits 16 or 32") from None
    except Exception as exc:  # a broken native library raises many kinds at import
        raise ModelError(f"bitsandbytes cannot run here ({type(exc).__name__}: {exc}); use bits 16 or 32") from None
