"""Which machine a run was made on (host, CPU, GPU): recorded with every saved benchmark run and accuracy entry,
read back from either, so that runs of different machines are never compared."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pricer.errors import HistoryError


@dataclass(frozen=True, slots=True, kw_only=True)
class Machine:
    """What tells machines apart: host name, CPU and GPU. Runs of different machines are never mixed."""

    node: str
    cpu: str
    gpu: str | None  # None: no CUDA GPU
    gpu_recorded: bool = True  # False for benchmark runs saved without pricer's plugin: their GPU is unknown
    cpu_features: str = field(default="", compare=False)
    gpu_memory_bytes: int | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        gpu = self.gpu or ("no GPU" if self.gpu_recorded else "GPU not recorded")
        if self.gpu and self.gpu_memory_bytes:
            gpu += f" {self.gpu_memory_bytes / 2**30:.0f} GiB"
        return f"{self.node} / {self.cpu} / {gpu}"


def gpu_info() -> dict[str, Any] | None:
    """The first CUDA GPU's name, memory, compute capability and CUDA version; None where CUDA is unavailable."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "memory_bytes": int(props.total_memory), "capability": f"{props.major}.{props.minor}",
            "count": torch.cuda.device_count(), "cuda": torch.version.cuda}


def add_machine_details(machine_info: dict[str, Any]) -> None:
    """What pricer adds to a saved benchmark run's machine_info: the GPU (or None) and the CPU's matmul features."""
    from pricer.engines.device import machine_info as pricer_machine_info

    machine_info["gpu"] = gpu_info()
    machine_info["cpu_features"] = pricer_machine_info()["cpu_features"]


def this_machine() -> dict[str, Any]:
    """This machine as an accuracy entry records it: the fields a benchmark run's machine_info has, flat."""
    from pricer.engines.device import machine_info as pricer_machine_info

    return {"node": platform.node(), **pricer_machine_info(), "gpu": gpu_info()}


def machine_of(info: Mapping[str, Any], *, where: str, cpu: Any) -> Machine:
    """A Machine from a benchmark run's machine_info or an entry's machine (cpu given as found in each)."""
    node = info.get("node")
    if not isinstance(node, str) or not isinstance(cpu, str):
        raise HistoryError(f"{where}: machine_info needs a 'node' and a CPU name; found node {node!r}, cpu {cpu!r}")
    gpu = info.get("gpu")
    if gpu is not None and not (isinstance(gpu, dict) and isinstance(gpu.get("name"), str)):
        raise HistoryError(f"{where}: machine_info 'gpu' must be null or an object with a 'name'; found {gpu!r}")
    memory = gpu.get("memory_bytes") if gpu else None
    return Machine(node=node, cpu=cpu, gpu=gpu["name"] if gpu else None, gpu_recorded="gpu" in info,
                   cpu_features=str(info.get("cpu_features", "")),
                   gpu_memory_bytes=memory if isinstance(memory, int) else None)
