"""One load per process: each (model, bits, adapter, device, compute dtype) loaded once, counted, freed on release."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pricer.engines.transformers.default_model import DEFAULT_MODEL
from pricer.engines.transformers.loading import LoadedModel, load_model


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelKey:
    """What makes two loads the same model."""

    model: str
    bits: int
    adapter: str | None
    device: str | None
    compute_dtype: str | None


class ModelCache:
    """Loads each (model, bits, adapter, device, compute dtype) once and counts loads; release() frees one."""

    def __init__(self, *, loader: Callable[..., LoadedModel] = load_model) -> None:
        self._loader = loader
        self._loaded: dict[ModelKey, LoadedModel] = {}
        self.loads = 0

    @staticmethod
    def key(
        model: str = DEFAULT_MODEL,
        *,
        bits: int,
        adapter: Path | None = None,
        device: str | None = None,
        compute_dtype: str | None = None,
    ) -> ModelKey:
        """The cache key for these load arguments."""
        return ModelKey(
            model=model,
            bits=bits,
            adapter=str(Path(adapter).expanduser().resolve()) if adapter is not None else None,
            device=device,
            compute_dtype=compute_dtype,
        )

    def get(
        self,
        model: str = DEFAULT_MODEL,
        *,
        bits: int,
        adapter: Path | None = None,
        device: str | None = None,
        compute_dtype: str | None = None,
    ) -> LoadedModel:
        """The loaded model for these arguments, loading it on first use."""
        key = self.key(model, bits=bits, adapter=adapter, device=device, compute_dtype=compute_dtype)
        if key not in self._loaded:
            self._loaded[key] = self._loader(
                model, bits=bits, adapter=adapter, device=device, compute_dtype=compute_dtype
            )
            self.loads += 1
        return self._loaded[key]

    def release(self, key: ModelKey) -> None:
        """Close and forget one model; unknown keys are ignored."""
        loaded = self._loaded.pop(key, None)
        if loaded is not None:
            loaded.close()

    def clear(self) -> None:
        """Close every model this cache holds."""
        for key in list(self._loaded):
            self.release(key)

    def __contains__(self, key: object) -> bool:
        return key in self._loaded

    def __len__(self) -> int:
        return len(self._loaded)
