"""Time the course's one-generate-per-item way against pricer's batched path at each width, against a floor.

    python benchmarks/speed.py --n 250 --bits 4,8,16,32 --data PATH [--out benchmarks/results/speed.json]

The floor is measured on the device that runs the model, in the same run. On a CPU: what the prompts' matmuls alone
cost at its fp32 rate, prompt tokens x 2 x decoder linear parameters / (fp32 FLOP/s). On CUDA: the same at the GPU's
own rate in the dtype the width multiplies in (fp32 at 32 bits, else the compute dtype), plus decode, which is bound
by memory: every decode step reads all weights once, so steps x weight bytes / the GPU's copy bandwidth. The output
head runs on the last position only (transformers' generate passes logits_to_keep=1) and the embedding is a lookup,
so neither counts; the JSON also gives the floor with all parameters (the looser textbook figure).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pricer.engines.device import choose_compute_dtype, measure_matmul_rate
from pricer.engines.predict import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, LLMPredictor, Prediction
from pricer.engines.transformers.loading import LoadedModel, load_model
from pricer.engines.widths import BITS
from pricer.files import write_json
from pricer.options.parsers import bits_list, positive_int
from pricer.task.items import DataSpec, Item, resolve_source
from pricer.task.load import load_items

GOAL_SPEEDUP = 2.0  # batched vs the course's way, at every width
GOAL_FLOOR_RATIO_32BIT = 1.3  # batched 32-bit time / fp32 matmul floor
RATE_SIZE = 1024  # large enough for the BLAS peak on a few cores; ~0.01 s per matmul at 150 GFLOP/s
RATE_SECONDS = 0.5
CUDA_RATE_SIZE = 8192  # ~1.1 TFLOP a product: past kernel-launch overhead, ~2 ms at an H100's bf16 peak
CUDA_COPY_BYTES = 1 << 30  # 1 GiB: far past a GPU's L2 cache (50 MB on an H100), so the copy streams from memory


@dataclass(frozen=True, slots=True, kw_only=True)
class Rates:
    """What the floors divide by, measured on the device that runs the model."""

    device: str  # cpu or cuda
    matmul_flops: Mapping[str, float]  # FLOP/s of a square matmul, per dtype
    bandwidth: float | None  # bytes/s of device memory (a copy reads and writes); None on CPU: prefill floor only


def measure_rates(device: str, *, dtypes: Sequence[str]) -> Rates:
    """The device's own rates: on CPU the fp32 matmul rate (as before), on CUDA each dtype's and the bandwidth."""
    if device != "cuda":
        return Rates(device="cpu", matmul_flops={"float32": measure_matmul_rate("float32", size=RATE_SIZE,
                                                                                 seconds=RATE_SECONDS)}, bandwidth=None)
    return Rates(device="cuda", matmul_flops={dtype: _cuda_matmul_rate(dtype) for dtype in dtypes},
                 bandwidth=_cuda_bandwidth())


def best_rates(first: Rates, second: Rates) -> Rates:
    """The higher of two measurements of each rate: other work on the machine can only lower one."""
    return Rates(device=first.device, matmul_flops={k: max(v, second.matmul_flops[k]) for k, v in first.matmul_flops.items()},
                 bandwidth=max(first.bandwidth, second.bandwidth) if first.bandwidth and second.bandwidth else None)


def _cuda_seconds(work, *, seconds: float = RATE_SECONDS) -> float:
    """Seconds one call of `work` takes on the GPU: best of three rounds of at least `seconds`, synchronized."""
    import torch

    work()  # warm-up: allocation, kernel choice, clocks
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(3):
        runs, start = 0, time.perf_counter()
        while True:
            work()
            runs += 1
            torch.cuda.synchronize()  # queued kernels count only once finished
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
        best = min(best, elapsed / runs)
    return best


def _cuda_matmul_rate(dtype: str, *, size: int = CUDA_RATE_SIZE) -> float:
    import torch

    a = torch.randn(size, size, device="cuda", dtype=getattr(torch, dtype))
    return 2 * size**3 / _cuda_seconds(lambda: a @ a)


def _cuda_bandwidth(*, nbytes: int = CUDA_COPY_BYTES) -> float:
    import torch

    source = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    target = torch.empty_like(source)
    return 2 * nbytes / _cuda_seconds(lambda: target.copy_(source))  # each byte read once and written once


def floors(width: Mapping, rates: Rates) -> dict:
    """A width's floors (seconds) and its batched time over them: the prompts' matmuls at the device's rate, and on
    CUDA the decode steps reading every weight once."""
    if rates.device == "cpu":
        dtype = "float32"  # unchanged from the CPU-only script: the figures in docs/benchmarks.md use it
    else:
        dtype = "float32" if width["bits"] == 32 else width["model"]["compute_dtype"]
    rate = rates.matmul_flops[dtype]
    decode = width["decode_steps"] * width["model"]["parameter_bytes"] / rates.bandwidth if rates.bandwidth else 0.0
    out = {"floor_dtype": dtype, "floor_matmul_flops": rate, "floor_decode_s": decode}
    for key, params in (("floor", "decoder_linear_parameters"), ("floor_all_parameters", "all_parameters")):
        out[f"{key}_s"] = width["prompt_tokens"] * 2 * width[params] / rate + decode
        out[f"{key}_ratio"] = width["batched_s"] / out[f"{key}_s"]
    return out


def decode_steps(completion_tokens: Sequence[int], *, batch_size: int) -> int:
    """Decode steps of the batched run at least: per batch, its longest completion's tokens (the first token comes
    from prefill; the end-of-text token, dropped from completions, takes the last step)."""
    return sum(max(completion_tokens[i:i + batch_size], default=0) for i in range(0, len(completion_tokens), batch_size))


def _timed(loaded: LoadedModel, items: Sequence[Item], *, batch_size: int, max_new_tokens: int) -> tuple[float, list[Prediction]]:
    import torch

    predictor = LLMPredictor(loaded, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=False)
    cuda = loaded.info.device == "cuda"
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    predictions = predictor.predict(items)
    if cuda:
        torch.cuda.synchronize()  # generate returns before queued kernels finish
    return time.perf_counter() - start, predictions


def _linear_parameters(model) -> tuple[int, int]:
    """(decoder linear weights, all weights) counted from layer shapes, so packed 4/8-bit storage does not matter."""
    import torch

    linear = total = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):  # bitsandbytes' Linear4bit and Linear8bitLt subclass it
            size = module.in_features * module.out_features
            total += 0 if name.endswith("lm_head") and model.config.tie_word_embeddings else size
            linear += 0 if name.endswith("lm_head") else size
        elif isinstance(module, torch.nn.Embedding):
            total += module.num_embeddings * module.embedding_dim
    return linear, total


def measure_width(items: Sequence[Item], *, bits: int, batch_size: int, max_new_tokens: int) -> dict:
    """Course way vs batched at one width: times, ratios and how many predictions differ."""
    loaded = load_model(bits=bits)
    try:
        # Burn-in: the first generate calls allocate, pick kernels and (at 4/8 bits) load bitsandbytes' ops.
        _timed(loaded, items[:batch_size], batch_size=batch_size, max_new_tokens=max_new_tokens)
        _timed(loaded, items[:1], batch_size=1, max_new_tokens=max_new_tokens)
        course_s, course = _timed(loaded, items, batch_size=1, max_new_tokens=max_new_tokens)
        batched_s, batched = _timed(loaded, items, batch_size=batch_size, max_new_tokens=max_new_tokens)
        tokens = sum(len(ids) for ids in loaded.tokenizer([item.prompt for item in items])["input_ids"])
        linear, total = _linear_parameters(loaded.model)
        differ = [item.index for item, a, b in zip(items, course, batched) if a != b]
        completion_tokens = [len(loaded.tokenizer(p.completion or "", add_special_tokens=False)["input_ids"])
                             for p in batched]
        return {
            "bits": bits,
            "model": loaded.info.to_dict(),
            "policy": LLMPredictor(loaded, batch_size=batch_size, max_new_tokens=max_new_tokens).policy.to_dict(),
            "items": len(items),
            "prompt_tokens": tokens,
            "decode_steps": decode_steps(completion_tokens, batch_size=batch_size),
            "decoder_linear_parameters": linear,
            "all_parameters": total,
            "course_s": course_s,
            "batched_s": batched_s,
            "course_s_per_item": course_s / len(items),
            "batched_s_per_item": batched_s / len(items),
            "speedup": course_s / batched_s,
            "differing_items": differ,
        }
    finally:
        loaded.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print one line per width and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=positive_int("--n"), default=250, metavar="N", help="items to time. Default: %(default)r")
    parser.add_argument("--bits", type=bits_list("--bits"), default=BITS, metavar="LIST", help="widths, e.g. 4,32. Default: 4,8,16,32")
    parser.add_argument("--data", metavar="PATH", help="data folder or file. Default: $PRICER_DATA, else the hub dataset")
    parser.add_argument("--batch-size", type=positive_int("--batch-size"), default=DEFAULT_BATCH_SIZE, metavar="N", help="Default: %(default)r")
    parser.add_argument("--max-new-tokens", type=positive_int("--max-new-tokens"), default=DEFAULT_MAX_NEW_TOKENS, metavar="N", help="Default: %(default)r")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed.json"), metavar="PATH", help="Default: %(default)s")
    parser.add_argument("--threads", type=positive_int("--threads"), metavar="N",
                        help="torch CPU threads; 1 keeps timings sane on a machine others are using. Default: torch's")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    items = load_items(DataSpec(source=resolve_source(args.data), n=args.n))
    load_before = os.getloadavg()
    # The floor is this device's: the GPU's own rates where the models run on CUDA (as load_model chooses).
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtypes = sorted({"float32", choose_compute_dtype(device)})
    # Best of a measurement before and after: other processes on the machine can only lower the rate.
    rates_before = measure_rates(device, dtypes=dtypes)
    widths = []
    for bits in args.bits:
        print(f"{bits:>2}-bit: timing {len(items)} items ...", file=sys.stderr, flush=True)
        widths.append(measure_width(items, bits=bits, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens))
    rates_after = measure_rates(device, dtypes=dtypes)
    rates = best_rates(rates_before, rates_after)
    for width in widths:  # floors against the best rates seen in this run
        width.update(floors(width, rates))

    measured = ", ".join(f"{dtype} matmul {rate / 1e9:,.0f} GFLOP/s" for dtype, rate in rates.matmul_flops.items())
    if rates.bandwidth:
        measured += f", memory {rates.bandwidth / 1e9:,.0f} GB/s"
    print(f"{device}: {measured} (best of before and after); "
          f"load average {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'bits':>4} {'course s/item':>14} {'batched s/item':>15} {'speedup':>8} {'floor s/item':>13} "
          f"{'x floor':>8} {'x floor(all)':>13} {'differ':>7}")
    for w in widths:
        n = w["items"]
        print(f"{w['bits']:>4} {w['course_s_per_item']:>14.3f} {w['batched_s_per_item']:>15.3f} {w['speedup']:>7.2f}x "
              f"{w['floor_s'] / n:>13.3f} {w['floor_ratio']:>7.2f}x {w['floor_all_parameters_ratio']:>12.2f}x "
              f"{len(w['differing_items']):>4}/{n}")
    write_json(args.out, {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_before": load_before[0],
            "load_average_after": os.getloadavg()[0],
        },
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "fp32_flops": rates.matmul_flops["float32"],  # as earlier files name the rate of the floor on CPU
        "matmul_flops": dict(rates.matmul_flops),
        "matmul_flops_before": dict(rates_before.matmul_flops),
        "matmul_flops_after": dict(rates_after.matmul_flops),
        "memory_bandwidth": rates.bandwidth,  # bytes/s; null on CPU, whose floor is the prefill's matmuls only
        "goals": {"speedup_min": GOAL_SPEEDUP, "floor_ratio_max_32bit": GOAL_FLOOR_RATIO_32BIT},
        "widths": widths,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
