"""Hardware classes: which machines give the same greedy decodes, so a baseline is compared like with like; which
class this machine, a run or a stored file belongs to; and where a session's baselines live."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pricer.store.fingerprint import Fingerprint

# Greedy decodes of one model differ by device and by the dtype matmuls run in (an H100 changed 41-104 of 250
# guesses at 4/8/16 bits; an AVX2-only CPU computing in fp32 changed the base 4-bit Error from $1,098.70 to
# $264.48 against bf16 on an AVX512-BF16 CPU). Both are in a class's name; the batching policy a baseline was
# made with is kept in the baseline itself and reproduced when gating.
CLASS_PATTERN = re.compile(r"^(cpu|cuda)-(float32|bfloat16|float16)\Z")  # \Z: `$` also matches before a final newline


def class_name(device: str, compute_dtype: str) -> str:
    """`cpu-float32`, `cpu-bfloat16`, `cuda-bfloat16`...: the device kind and its preferred compute dtype."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return f"{kind}-{compute_dtype}"


def this_class(device: str | None = None) -> str:
    """This machine's class for `device` (default: cuda when available): what 4- and 16-bit widths compute in."""
    from pricer.engines.device import choose_compute_dtype, resolve_device

    device = resolve_device(device)
    return class_name(device, choose_compute_dtype(device))


# What makes a hardware class: greedy decodes of one model differ between these (fingerprint context fields).
CLASS_FIELDS = ("device", "compute_dtype")


def class_of_fingerprint(fingerprint: Fingerprint) -> str:
    """The class a run's fingerprint records, e.g. "cpu-bfloat16" (unknown fields read "?"). At 8 and 32 bits the
    compute dtype is the width's, not the class's: a stored file's folder says better (class_of_file)."""
    return "-".join(str(fingerprint.context.get(name) or "?") for name in CLASS_FIELDS)


def class_of_file(path: Path, fingerprint: Fingerprint) -> str:
    """The class of a stored baseline or run: its folder's name (baselines/<model>/<class>/), else its fingerprint's."""
    folder = Path(path).parent.name
    return folder if CLASS_PATTERN.match(folder) else class_of_fingerprint(fingerprint)


def stored_classes(model_folder: Path, width: str | None = None) -> list[str]:
    """The class folders in a model's baseline folder (that hold a baseline of `width`, when given)."""
    if not model_folder.is_dir():
        return []
    pattern = f"*/{width}.json" if width else "*/"
    return sorted({p.parent.name if width else p.name for p in model_folder.glob(pattern)
                   if CLASS_PATTERN.match(p.parent.name if width else p.name)})


@dataclass(slots=True, kw_only=True)
class BaselineHome:
    """Where a session's baselines live: `folder/<model>/<class>/<width>.json`, the class being this machine's, or
    the one asked for on purpose (--pricer-baseline-class); a rewrite always goes to this machine's own class."""

    folder: Path  # the baselines folder, absolute
    model_name: str
    classic: bool  # a classic predictor: the same on every machine, no class folder
    device: str | None = None
    asked_class: str | None = None
    update: bool = False
    _machine_class: str | None = field(default=None, repr=False)

    @property
    def machine_class(self) -> str | None:
        """This machine's class (it probes the compute dtype, so only when asked); None for a classic predictor."""
        if self.classic:
            return None
        if self._machine_class is None:
            self._machine_class = this_class(self.device)
        return self._machine_class

    @property
    def baseline_class(self) -> str | None:
        """The class whose baselines this run is gated against."""
        if self.classic:
            return None
        return self.machine_class if self.update else (self.asked_class or self.machine_class)

    @property
    def cross_class(self) -> bool:
        return self.baseline_class != self.machine_class

    def path(self, width: str) -> Path:
        from pricer.store.baselines import baseline_path

        if self.classic:
            return baseline_path(self.folder, self.model_name, "classic")
        return baseline_path(self.folder, self.model_name, width, hardware_class=self.baseline_class)

    def other_classes(self, width: str) -> list[str]:
        """The other classes holding a baseline of this width."""
        path = self.path(width)
        return [c for c in stored_classes(path.parent.parent, width) if c != path.parent.name]
