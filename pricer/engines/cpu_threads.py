"""How torch's CPU threads wait for each other and how many there are: set in the environment before torch loads,
so that a gate sharing its CPU with other busy processes sleeps instead of spinning; what the user set wins."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

WAIT_ENV = "OMP_WAIT_POLICY"
# OpenMP threads that wait at a barrier spin before they sleep (libgomp, torch's runtime on Linux: about 300,000
# spins, a few ms, at every parallel region's end). Beside another busy process a spinning thread takes the core
# the thread it waits for needs. Measured on a 2-core AVX2 CPU at load ~4.5: `pricer eval --model default --bits
# 32 --n 16` took 0.68x the wall time and 0.56x the CPU time with PASSIVE, with the same predictions: the wait
# policy changes no arithmetic, so baselines stay valid (benchmarks/busy_runner.py measures it).
WAIT_POLICY = "PASSIVE"
RUNTIME_DEFAULT = "default"  # recorded when nothing set the policy: the OpenMP runtime's own, which spins first
THREADS_ENV = "OMP_NUM_THREADS"  # the one pricer sets
# torch sizes its intra-op pool from these when it starts, MKL_NUM_THREADS over OMP_NUM_THREADS (ATen's
# intraop_default_num_threads): either one set by the user is the user's choice.
THREAD_ENVS = ("MKL_NUM_THREADS", THREADS_ENV)


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuThreads:
    """What torch's CPU threads do in this process, and why."""

    wait_policy: str  # PASSIVE, the user's value, or "default" (the OpenMP runtime's own)
    wait_reason: str
    threads: int | None  # torch's intra-op threads as the environment sets them; None: torch's default
    threads_reason: str

    def line(self) -> str:
        """One line for the pytest header."""
        threads = "default" if self.threads is None else str(self.threads)
        return (f"pricer: OpenMP wait policy {self.wait_policy} ({self.wait_reason}); "
                f"torch threads {threads} ({self.threads_reason})")


def apply(environ: MutableMapping[str, str], *, workers: int | None = None, cpus: int | None = None,
          torch: Any = None) -> CpuThreads:
    """Set OpenMP's wait policy and, in one of `workers` processes sharing the CPU, its share of the cores, where the
    user has not; `torch` is the module if already imported (its runtime has read the environment), else None."""
    if WAIT_ENV in environ:
        wait, wait_reason = wait_policy(environ), f"${WAIT_ENV} was set"
    elif torch is not None:
        # Setting it now would record a policy the running runtime never read.
        wait, wait_reason = RUNTIME_DEFAULT, f"torch was imported before pricer could set ${WAIT_ENV}; set it yourself"
    else:
        environ[WAIT_ENV] = WAIT_POLICY
        wait, wait_reason = WAIT_POLICY, "pricer's default: waiting threads sleep, not spin, on a shared CPU"

    given = next((name for name in THREAD_ENVS if name in environ), None)
    if given is not None:
        value = environ[given].strip()
        threads, threads_reason = (int(value) if value.isdigit() else None), f"${given} was set"
    elif workers is None:
        # Left to torch: another count can flip a 16-bit (bf16) greedy decode, which would move baselines.
        threads, threads_reason = None, "one per core, torch's own choice"
    else:
        cpus = available_cpus() if cpus is None else cpus
        threads = threads_per_worker(cpus, workers)
        environ[THREADS_ENV] = str(threads)
        if torch is not None:  # torch reads the environment only when it starts
            torch.set_num_threads(threads)
        threads_reason = f"{cpus} cores shared by {workers} xdist workers"
    return CpuThreads(wait_policy=wait, wait_reason=wait_reason, threads=threads, threads_reason=threads_reason)


def wait_policy(environ: Mapping[str, str]) -> str:
    """The wait policy the environment gives OpenMP: 'PASSIVE', 'ACTIVE' (either case), or 'default'."""
    return environ.get(WAIT_ENV, "").strip().upper() or RUNTIME_DEFAULT


def threads_per_worker(cpus: int, workers: int) -> int:
    """Torch threads for each of `workers` processes sharing `cpus` cores: more threads than cores only spin."""
    return max(1, cpus // max(1, workers))


def available_cpus() -> int:
    """The cores this process may use, as a container or taskset limits them."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
