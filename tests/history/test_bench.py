"""Benchmarks: what users wait for, a batch of real prompts through prediction (prefill and decode), per bit width.

    pytest -m benchmark --benchmark-autosave          # then `pricer history`, or --benchmark-compare (docs/benchmarks.md)

Each width's model is loaded once, outside the timed part, and warmed up until its rounds settle (pricer.history.timing);
runs on CUDA where it exists, else on CPU (and says so). PRICER_BENCH_SLOWDOWN=0.3 plants a 30% slowdown, to prove
that `pricer history` and --benchmark-compare-fail catch one; nothing else reads it.
"""

from __future__ import annotations

import os
import resource
import sys
import warnings
from pathlib import Path

import pytest
from pytest_benchmark.utils import load_timer

from pricer.history.timing import matmul_probe, round_setup, rounds_for, slowed, timed_call, warm_up

pytestmark = pytest.mark.benchmark

# Linux keeps a process's peak RSS (VmHWM) and resets it when "5" is written to clear_refs:
# https://www.kernel.org/doc/html/latest/filesystems/proc.html ("clear_refs"). Elsewhere ru_maxrss, the
# process's lifetime peak, is the best there is (and includes the widths loaded before).
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")
SLOWDOWN_ENV = "PRICER_BENCH_SLOWDOWN"  # test-only: a share (0.3 = +30%) of busy work added to each timed call


class PeakMemory:
    """Peak memory over a block: bytes allocated on the GPU, or the process's resident set on CPU."""

    def __init__(self, *, cuda: bool) -> None:
        self.cuda = cuda
        self.kind = "cuda max_memory_allocated" if cuda else "process peak RSS"

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()
            return
        try:
            CLEAR_REFS.write_text("5")
        except OSError:
            self.kind = "process lifetime peak RSS"

    def peak_bytes(self) -> int:
        if self.cuda:
            import torch

            return int(torch.cuda.max_memory_allocated())
        if self.kind == "process peak RSS":
            for line in STATUS.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        kib_or_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kib_or_bytes if sys.platform == "darwin" else kib_or_bytes * 1024  # macOS counts bytes


def planted_slowdown() -> float:
    """The share of PRICER_BENCH_SLOWDOWN, 0 when unset."""
    raw = os.environ.get(SLOWDOWN_ENV, "")
    try:
        share = float(raw) if raw else 0.0
    except ValueError:
        share = -1.0
    if not 0 <= share < 10:
        pytest.fail(f"{SLOWDOWN_ENV}={raw!r} is not a share between 0 and 10 (0.3 plants a 30% slowdown)",
                    pytrace=False)
    return share


def test_prediction_of_a_batch_of_real_prompts(benchmark, request, pricer_session, pricer_width, pricer_model,
                                                pricer_bench_items, pricer_bench_rounds):
    from pricer.engines.predict import LLMPredictor

    info = pricer_model.info
    cuda = info.device == "cuda"
    if not cuda:
        warnings.warn(f"{pricer_width}: no CUDA here, the benchmark times the CPU ({info.compute_dtype} compute)",
                      UserWarning, stacklevel=1)
    prompts = [item.prompt for item in pricer_bench_items]
    predictor = LLMPredictor(pricer_model, batch_size=pricer_session.settings.batch_size, progress=False)
    peak = PeakMemory(cuda=cuda)
    benchmark.group = pricer_width
    timer = load_timer(request.config.getoption("benchmark_timer")).target  # pytest-benchmark's clock, its units
    call = timed_call(lambda: predictor.complete(prompts), cuda=cuda)
    if share := planted_slowdown():
        call = slowed(call, share=share, timer=timer)

    # Each round starts with an idle GPU and collected garbage, then times the speed probe (pricer.history.timing).
    probe = matmul_probe(device=info.device, dtype=info.compute_dtype, timer=timer)
    idle = round_setup(cuda=cuda)

    def setup() -> None:
        idle()
        probe()

    peak.reset()
    warm, rounds = None, 1  # under --benchmark-disable pytest-benchmark calls once, untimed: no warm-up either
    if benchmark.enabled:
        idle()
        probe.work()  # warm, untimed
        warm = warm_up(call, timer=timer)
        # pytest-benchmark's parsers check these two options but keep them as text
        rounds = pricer_bench_rounds or rounds_for(warm.typical,
                                                   min_rounds=int(request.config.getoption("benchmark_min_rounds")),
                                                   max_time=float(request.config.getoption("benchmark_max_time")))
    completions = benchmark.pedantic(call, setup=setup, rounds=rounds, warmup_rounds=0, iterations=1)

    assert len(completions) == len(prompts)
    tokenizer = pricer_model.tokenizer
    prompt_tokens = sum(len(tokenizer(p)["input_ids"]) for p in prompts)
    # Completions re-tokenized: the tokens generated, less the end-of-sequence token skipped when decoding.
    new_tokens = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in completions)
    benchmark.extra_info.update({
        "width": pricer_width, "bits": info.bits, "quantization": info.quantization, "model": info.name,
        "batch_size": predictor.policy.batch_size, "items": len(prompts), "max_new_tokens": predictor.policy.max_new_tokens,
        "device": info.device, "gpu": info.gpu_name, "dtype": info.compute_dtype, "load_dtype": info.load_dtype,
        "prompt_tokens": prompt_tokens, "new_tokens": new_tokens,
        "peak_memory_bytes": peak.peak_bytes(), "peak_memory": peak.kind,
        "warmup_rounds": warm.rounds if warm else 0, "warmup_stable": warm.stable if warm else None,
        "planted_slowdown": share,
        "speed_probe_s": probe.median, "speed_probe": probe.description,
    })
    stats = benchmark.stats.stats if benchmark.stats else None  # None under --benchmark-disable
    if stats is not None and stats.median > 0:  # the median: one slow round does not move it
        benchmark.extra_info["tokens_per_s"] = round((prompt_tokens + new_tokens) / stats.median, 1)
        benchmark.extra_info["new_tokens_per_s"] = round(new_tokens / stats.median, 1)


@pytest.mark.gpu
def test_benchmarks_run_on_cuda_where_it_exists(request, pricer_width):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: without one the benchmarks run on CPU")
    assert request.getfixturevalue("pricer_model").info.device == "cuda"


@pytest.mark.gpu
def test_timed_call_waits_for_queued_cuda_kernels():
    import time

    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU: on CPU every kernel has finished when its call returns")
    a = torch.randn(4096, 4096, device="cuda")
    work = lambda: [a @ a for _ in range(20)]  # noqa: E731 - ~3 TFLOP, queued asynchronously
    work()
    torch.cuda.synchronize()
    start = time.perf_counter()
    work()
    unsynchronized = time.perf_counter() - start
    torch.cuda.synchronize()
    start = time.perf_counter()
    timed_call(work, cuda=True)()
    synchronized = time.perf_counter() - start
    assert synchronized > unsynchronized
