"""Tests of benchmarks/speed.py's floors with made-up rates: a CPU divides by its fp32 rate as before, a GPU by its own
rate in the width's dtype plus the decode steps' weight reads at its bandwidth. No timing here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # a server, a second process or a wheel: `pytest -m e2e`

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "speed.py"


@pytest.fixture(scope="module")
def speed():
    spec = importlib.util.spec_from_file_location("speed_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def width(bits: int, *, compute_dtype: str = "bfloat16") -> dict:
    return {"bits": bits, "prompt_tokens": 1000, "decoder_linear_parameters": 100_000_000,
            "all_parameters": 130_000_000, "decode_steps": 7, "batched_s": 1.0,
            "model": {"compute_dtype": compute_dtype, "parameter_bytes": 500_000_000}}


def test_on_cpu_the_floor_is_the_prompts_matmuls_at_the_fp32_rate(speed):
    rates = speed.Rates(device="cpu", matmul_flops={"float32": 100e9}, bandwidth=None)

    found = speed.floors(width(4), rates)

    assert found["floor_s"] == pytest.approx(1000 * 2 * 100e6 / 100e9)  # 2 s, whatever the width computes in
    assert (found["floor_dtype"], found["floor_decode_s"]) == ("float32", 0.0)
    assert found["floor_ratio"] == pytest.approx(0.5)


def test_on_cuda_the_floor_uses_the_gpus_rate_in_the_widths_dtype_and_the_decode_reads(speed):
    rates = speed.Rates(device="cuda", matmul_flops={"float32": 50e12, "bfloat16": 700e12}, bandwidth=2e12)

    half, full = speed.floors(width(16), rates), speed.floors(width(32), rates)

    decode = 7 * 500e6 / 2e12
    assert half["floor_s"] == pytest.approx(1000 * 2 * 100e6 / 700e12 + decode)
    assert full["floor_s"] == pytest.approx(1000 * 2 * 100e6 / 50e12 + decode)
    assert (half["floor_dtype"], full["floor_dtype"], half["floor_decode_s"]) == ("bfloat16", "float32",
                                                                                   pytest.approx(decode))


def test_decode_steps_count_each_batchs_longest_completion(speed):
    assert speed.decode_steps([3, 5, 2, 4, 4], batch_size=2) == 5 + 4 + 4


def test_the_best_of_two_measurements_is_kept_rate_by_rate(speed):
    before = speed.Rates(device="cuda", matmul_flops={"bfloat16": 600e12, "float32": 50e12}, bandwidth=2.5e12)
    after = speed.Rates(device="cuda", matmul_flops={"bfloat16": 650e12, "float32": 40e12}, bandwidth=2.0e12)

    best = speed.best_rates(before, after)

    assert (dict(best.matmul_flops), best.bandwidth) == ({"bfloat16": 650e12, "float32": 50e12}, 2.5e12)
