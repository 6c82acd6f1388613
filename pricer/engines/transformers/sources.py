"""Where a model's weights come from: 'default', a local folder or a hub id, resolved to a folder and its names."""

from __future__ import annotations

from pathlib import Path

from pricer.engines.transformers.default_model import (DEFAULT_ALIASES, DEFAULT_MODEL, DEFAULT_NAME, converted_folder,
                                                       default_gguf)
from pricer.errors import ModelError


def _looks_like_path(model: str) -> bool:
    # Hub ids are `name` or `org/name`; anything else that names a missing folder is a path typo.
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def resolve_model(model: str) -> tuple[Path, str, frozenset[str]]:
    """(local folder, display name, names an adapter's base may use) for 'default', a path or a hub id."""
    if model == DEFAULT_MODEL:
        folder = converted_folder(default_gguf())
        return folder, DEFAULT_NAME, short_names(*DEFAULT_ALIASES, str(folder))
    path = Path(model).expanduser()
    if path.is_dir():
        if not any(path.glob("*.safetensors")):
            raise ModelError(f"{path}: no .safetensors weights (pricer loads safetensors only)")
        return path.resolve(), path.resolve().name.lower(), short_names(model, str(path.resolve()))
    if path.exists():
        raise ModelError(f"{path}: is a file; pass the model's folder (holding config.json and *.safetensors)")
    if _looks_like_path(model):
        raise ModelError(f"{model}: no such model folder; pass an existing folder, a hub id like org/name, or 'default'")
    return _from_hub(model), model.rsplit("/", 1)[-1].lower(), short_names(model)


def _from_hub(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        # Only what loading needs: safetensors weights, configs and tokenizer files; never pickled .bin weights.
        return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as exc:  # the hub client raises connection, auth and not-found errors of many kinds
        raise ModelError(
            f"cannot load {repo_id!r} from the Hugging Face hub ({type(exc).__name__}); "
            "without internet pass a local model folder, or use model 'default' (SmolLM2-135M-Instruct, shipped offline)"
        ) from None


def short_names(*names: str) -> frozenset[str]:
    """Each name's last path part, lower-cased: how an adapter's base is matched against a model's names."""
    return frozenset(Path(n.rstrip("/")).name.lower() for n in names if n)
