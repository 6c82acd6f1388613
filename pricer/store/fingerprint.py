"""What produced a run: inputs that decide its predictions, and the context that only adds noise."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricer.engines.transformers.hashes import ADAPTER_FILES_PREFIX, MODEL_FILES_PREFIX

Scalar = str | int | float | bool | None

# What a run's predictions are made from: the model, its width and inputs, and how it decodes. Stored apart from the
# context (machine, libraries, batching), and every difference in either is listed as a change since the baseline.
DECISIVE = (
    "predictor", "model", "weights_sha256", "adapter_sha256", "bits", "quantization",
    "items_sha256", "prompts_sha256", "n", "prompt", "max_new_tokens", "do_sample",
)
# Besides those, each file that decides an answer is a decisive field of its own, named by the file
# ("model_files/generation_config.json", "adapter_files/adapter_config.json"), so a change names the file.
FILE_PREFIXES = (MODEL_FILES_PREFIX, ADAPTER_FILES_PREFIX)
# Only these make a baseline "not comparable": the paired verdict needs the same items (same indices, texts and
# truths) at the same width. Whatever produced the guesses (model, adapter, prompt, decoding, engine, hardware)
# is exactly what a merge changes, so it is judged, never refused.
COMPARABLE = ("bits", "n", "items_sha256")
# Baselines made before items had a digest of their own stored the prompts' digest under this name.
_RENAMED = {"data_sha256": "prompts_sha256"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Fingerprint:
    """Two flat maps: `decisive`, what the predictions are made from, and `context`, where they were made."""

    decisive: Mapping[str, Scalar]
    context: Mapping[str, Scalar] = field(default_factory=dict)

    def to_dict(self) -> dict[str, dict[str, Scalar]]:
        return {"decisive": dict(self.decisive), "context": dict(self.context)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, where: str) -> Fingerprint:
        from pricer.errors import BaselineError

        parts = {}
        for part in ("decisive", "context"):
            value = raw.get(part)
            if not isinstance(value, dict) or not all(isinstance(v, Scalar) for v in value.values()):
                raise BaselineError(f"{where}: fingerprint.{part} must be an object of plain values")
            parts[part] = value
        parts["decisive"] = {_RENAMED.get(k, k): v for k, v in parts["decisive"].items()}
        return cls(**parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class FieldChange:
    field: str
    baseline: Scalar
    now: Scalar


def differences(baseline: Fingerprint, now: Fingerprint) -> tuple[list[FieldChange], list[FieldChange], tuple[str, ...]]:
    """(what makes the run not comparable, what changed since the baseline, the files the baseline predates) between
    two fingerprints. A field one side lacks (recorded only by a later pricer, or only for one kind of predictor) is a
    change, not a mismatch; a file's hash a baseline from before the files were hashed lacks is neither."""
    lacking = unrecorded(baseline, now)
    changes = [c for c in _diff(_width(baseline.decisive), _width(now.decisive)) if c.field not in lacking]
    changes += _diff(baseline.context, now.context)
    refused = [c for c in changes if c.field in COMPARABLE and None not in (c.baseline, c.now)]
    return refused, [c for c in changes if c not in refused], lacking


def unrecorded(baseline: Fingerprint, now: Fingerprint) -> tuple[str, ...]:
    """The files `now` records that `baseline` cannot be checked on: it was made before pricer hashed any file
    beside the weights (it names none), so their absence there says nothing of a change."""
    if any(k.startswith(FILE_PREFIXES) for k in baseline.decisive):
        return ()
    return tuple(sorted(k for k in now.decisive if k.startswith(FILE_PREFIXES)))


def unrecorded_text(fields: tuple[str, ...]) -> str:
    """What a baseline made before the files were hashed lacks, and how to record them."""
    return (f"the baseline predates the hashes of {', '.join(fields)}: a change to them since it was made cannot "
            "be named; rewrite it with --update-baselines to record them")


def _width(decisive: Mapping[str, Scalar]) -> Mapping[str, Scalar]:
    """The fields with a classic predictor's width, "classic", where bits would be: a run of a loaded model's width
    is not comparable with it (another width), not a change to judge (a missing field)."""
    classic = "bits" not in decisive and decisive.get("predictor") not in (None, "llm")
    return {**decisive, "bits": "classic"} if classic else decisive


def _diff(a: Mapping[str, Scalar], b: Mapping[str, Scalar]) -> list[FieldChange]:
    return [FieldChange(field=k, baseline=a.get(k), now=b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def commit_info(root: Path | None = None) -> dict[str, Scalar]:
    """The git commit a run was made from, as pytest-benchmark records it; empty outside a repository."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def split_fields(flat: Mapping[str, Scalar]) -> Fingerprint:
    """A run's recorded fields, split: those in DECISIVE say what made the predictions, the rest are context."""
    decisive = {k: flat[k] for k in DECISIVE if k in flat} | {k: v for k, v in flat.items() if k.startswith(FILE_PREFIXES)}
    return Fingerprint(decisive=decisive, context={k: v for k, v in flat.items() if k not in decisive})


def llm_fields(loaded: Any, policy: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """What decides an LLM width's predictions: the model as loaded (what is really in memory, not what was asked),
    its batching policy, library versions, and how torch's CPU threads split and wait."""
    import os

    import torch

    from pricer.engines.cpu_threads import wait_policy

    info = loaded.info.to_dict()
    versions, files = info.pop("versions"), info.pop("files")
    flat = info | {f"version_{k}": v for k, v in versions.items()} | files | dict(policy)
    flat["quantization"] = detected_quantization(loaded.model)  # catches a wrong width being loaded
    flat["predictor"] = "llm"
    for noisy in ("path", "parameter_bytes"):
        flat.pop(noisy, None)
    if flat.get("adapter"):  # its folder's name, not where this checkout lives: adapter_sha256 decides
        flat["adapter"] = Path(flat["adapter"]).name
    # How a CPU matmul splits its sums: at 16 bits (bf16) one fine-tuned decode of 250 flipped between 1 and 2 threads.
    flat["torch_threads"] = torch.get_num_threads()
    # How waiting threads wait (pricer.engines.cpu_threads): speed only, no arithmetic, so never decisive.
    flat["omp_wait_policy"] = wait_policy(os.environ)
    return flat


def detected_quantization(model: Any) -> str:
    """The quantization actually in memory, read off the linear layers' classes."""
    kinds = {type(m).__name__ for m in model.modules()}
    if "Linear4bit" in kinds:
        return "nf4-double-quant" if _double_quant(model) else "4bit"
    if "Linear8bitLt" in kinds:
        return "llm.int8"
    return "none"


def _double_quant(model: Any) -> bool:
    config = getattr(model.config, "quantization_config", None)
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    return bool(config) and get("bnb_4bit_quant_type") == "nf4" and bool(get("bnb_4bit_use_double_quant"))
