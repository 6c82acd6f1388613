"""Benchmarks: what users wait for, a batch of real prompts through prediction (prefill and decode), per bit width.

    pytest -m benchmark --benchmark-autosave          # then --benchmark-compare --benchmark-compare-fail=mean:10%

Each width's model is loaded once, outside the timed part; runs on CUDA where it exists, else on CPU (and says so).
"""

from __future__ import annotations

import resource
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

# Linux keeps a process's peak RSS (VmHWM) and resets it when "5" is written to clear_refs:
# https://www.kernel.org/doc/html/latest/filesystems/proc.html ("clear_refs"). Elsewhere ru_maxrss, the
# process's lifetime peak, is the best there is (and includes the widths loaded before).
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


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


def timed_call(function: Callable[[], object], *, cuda: bool) -> Callable[[], object]:
    """`function` made safe to time: on CUDA it returns only once the GPU has finished what it queued."""
    if not cuda:
        return function
    import torch

    def synchronized() -> object:
        result = function()
        torch.cuda.synchronize()  # generate() can return while kernels are still queued: wait, inside the timing
        return result

    return synchronized


def synchronize(*, cuda: bool) -> Callable[[], None]:
    """A pedantic `setup`: start each round with an idle GPU, so earlier work is not timed."""

    def setup() -> None:
        if cuda:
            import torch

            torch.cuda.synchronize()

    return setup


def test_prediction_of_a_batch_of_real_prompts(benchmark, pricer_session, pricer_width, pricer_model,
                                                pricer_bench_items, pricer_bench_rounds):
    from pricer.predict import LLMPredictor

    info = pricer_model.info
    cuda = info.device == "cuda"
    if not cuda:
        warnings.warn(f"{pricer_width}: no CUDA here, the benchmark times the CPU ({info.compute_dtype} compute)",
                      UserWarning, stacklevel=1)
    prompts = [item.prompt for item in pricer_bench_items]
    predictor = LLMPredictor(pricer_model, batch_size=pricer_session.settings.batch_size, progress=False)
    peak = PeakMemory(cuda=cuda)
    benchmark.group = pricer_width

    peak.reset()
    completions = benchmark.pedantic(timed_call(lambda: predictor.complete(prompts), cuda=cuda),
                                     setup=synchronize(cuda=cuda), rounds=pricer_bench_rounds, warmup_rounds=1,
                                     iterations=1)

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
    })
    stats = benchmark.stats.stats if benchmark.stats else None  # None under --benchmark-disable
    if stats is not None and stats.mean > 0:
        benchmark.extra_info["tokens_per_s"] = round((prompt_tokens + new_tokens) / stats.mean, 1)
        benchmark.extra_info["new_tokens_per_s"] = round(new_tokens / stats.mean, 1)


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
