"""Time the course's one-generate-per-item way against pricer's batched path at each width, against a matmul floor.

    python benchmarks/speed.py --n 250 --bits 4,8,16,32 --data PATH [--out benchmarks/results/speed.json]

The floor is what the prompts' matmuls alone cost at this machine's fp32 rate, measured in the same run:
prompt tokens x 2 x decoder linear parameters / (fp32 FLOP/s). The output head runs on the last position only
(transformers' generate passes logits_to_keep=1) and the embedding is a lookup, so neither counts; the JSON also
gives the floor with all parameters (the looser textbook figure).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pricer.data import DataSpec, Item, load_items, resolve_source
from pricer.files import write_json
from pricer.models import BITS, LoadedModel, load_model, measure_matmul_rate
from pricer.options import bits_list, positive_int
from pricer.predict import DEFAULT_BATCH_SIZE, DEFAULT_MAX_NEW_TOKENS, LLMPredictor, Prediction

GOAL_SPEEDUP = 2.0  # batched vs the course's way, at every width
GOAL_FLOOR_RATIO_32BIT = 1.3  # batched 32-bit time / fp32 matmul floor
RATE_SIZE = 1024  # large enough for the BLAS peak on a few cores; ~0.01 s per matmul at 150 GFLOP/s
RATE_SECONDS = 0.5


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
        return {
            "bits": bits,
            "model": loaded.info.to_dict(),
            "policy": LLMPredictor(loaded, batch_size=batch_size, max_new_tokens=max_new_tokens).policy.to_dict(),
            "items": len(items),
            "prompt_tokens": tokens,
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
    # Best of a measurement before and after: other processes on the machine can only lower the rate.
    rate_before = measure_matmul_rate("float32", size=RATE_SIZE, seconds=RATE_SECONDS)
    widths = []
    for bits in args.bits:
        print(f"{bits:>2}-bit: timing {len(items)} items ...", file=sys.stderr, flush=True)
        widths.append(measure_width(items, bits=bits, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens))
    rate_after = measure_matmul_rate("float32", size=RATE_SIZE, seconds=RATE_SECONDS)
    rate = max(rate_before, rate_after)
    for width in widths:  # floors against the best rate seen in this run
        for key, params in (("floor", "decoder_linear_parameters"), ("floor_all_parameters", "all_parameters")):
            width[f"{key}_s"] = width["prompt_tokens"] * 2 * width[params] / rate
            width[f"{key}_ratio"] = width["batched_s"] / width[f"{key}_s"]

    print(f"fp32 matmul {rate / 1e9:.0f} GFLOP/s (before {rate_before / 1e9:.0f}, after {rate_after / 1e9:.0f}); "
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
        "fp32_flops": rate,
        "fp32_flops_before": rate_before,
        "fp32_flops_after": rate_after,
        "goals": {"speedup_min": GOAL_SPEEDUP, "floor_ratio_max_32bit": GOAL_FLOOR_RATIO_32BIT},
        "widths": widths,
    })
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
