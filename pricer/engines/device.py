"""This machine: its device, the dtype its matmuls run in (measured, not assumed), and what a run records of it."""

from __future__ import annotations

import functools
import os
import platform
import time
from typing import Any

from pricer.errors import ModelError, OptionError

DTYPES = ("float32", "bfloat16", "float16")
COMPUTE_DTYPE_ENV = "PRICER_COMPUTE_DTYPE"

# On CPU, bf16 compute is used only when clearly faster than fp32. Measured here (AMD EPYC, 2 cores):
# fp32 ~135-148 GFLOP/s, bf16 ~350-400 GFLOP/s; an AVX2-only machine gave bf16 < 1 GFLOP/s.
CPU_BF16_MIN_SPEEDUP = 1.5
PROBE_SIZE = 256  # 33 MFLOP per matmul: ~0.25 ms in fp32 here, ~30 ms where bf16 is emulated
PROBE_SECONDS = 0.02  # per dtype and round; the probe costs well under a second even on slow machines


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

    a = torch.randn(size, size).to(torch_dtype(dtype))
    b = torch.randn(size, size).to(torch_dtype(dtype))
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


def torch_dtype(name: Any):  # -> torch.dtype
    """The torch dtype a name stands for; a torch dtype is returned as it is."""
    import torch

    if isinstance(name, torch.dtype):
        return name
    if name not in DTYPES:
        raise OptionError(f"compute_dtype: {name!r} is not one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def machine_info() -> dict[str, str]:
    """The machine a run was made on; another CPU can flip greedy decodes, so it is recorded."""
    import cpuinfo

    info = cpuinfo.get_cpu_info()
    flags = set(info.get("flags", []))
    return {
        "cpu": info.get("brand_raw", platform.processor()),
        "cpu_features": ",".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }
