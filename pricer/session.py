"""One eval session: its settings, the items, each width's model loaded once, runs and verdicts."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricer.baselines import Baseline, baseline_path, read_baseline, write_baseline
from pricer.data import DataSpec, Item, items_digest, load_items
from pricer.errors import BaselineError, OptionError
from pricer.evaluate import RunResult, evaluate
from pricer.fingerprint import DECISIVE, Fingerprint, commit_info, machine_info
from pricer.gate import GateConfig, Tax, Verdict, compare, minimum_detectable_effect, quantization_ladder

MEANINGLESS_SHARE = 0.25  # a gate that cannot see a 25% worsening protects nothing
SMALL_N = 50


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalSettings:
    """Everything the options decide."""

    data: DataSpec
    model: str = "default"
    predictor: str | None = None  # a classic predictor instead of an LLM
    bits: tuple[int, ...] = (4, 8, 16, 32)
    adapter: Path | None = None
    device: str | None = None
    batch_size: int = 8
    baselines: Path = Path("baselines")
    update: bool = False
    reason: str | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    max_tax_share: float | None = None
    rerun_args: tuple[str, ...] = ("-m", "eval")  # how this run was invoked, for the accepting command

    @property
    def widths(self) -> tuple[str, ...]:
        """Test ids: one per bit width, or the classic predictor's name."""
        return (self.predictor,) if self.predictor else tuple(f"{b}bit" for b in self.bits)

    @property
    def model_name(self) -> str:
        if self.predictor:
            return self.predictor
        name = "smollm2-135m-instruct" if self.model == "default" else Path(self.model).name or self.model
        return f"{name}+{self.adapter.name}" if self.adapter else name


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What happened to one width's gate, for the end-of-run summary."""

    width: str
    path: Path
    text: str
    passed: bool


class EvalSession:
    """State of one pytest (or CLI) eval session; the plugin keeps exactly one in config.stash."""

    def __init__(self, settings: EvalSettings, *, root: Path) -> None:
        from pricer.models import ModelCache

        self.settings = settings
        self.root = root
        self.models = ModelCache()
        self._items: list[Item] | None = None
        self._runs: dict[str, RunResult] = {}
        self._fingerprints: dict[str, Fingerprint] = {}
        self.outcomes: list[Outcome] = []
        self.used_baselines: list[Path] = []

    # ------------------------------------------------------------------ inputs
    @property
    def items(self) -> list[Item]:
        if self._items is None:
            self._items = load_items(self.settings.data)
        return self._items

    def baseline_path(self, width: str) -> Path:
        folder = self.settings.baselines if self.settings.baselines.is_absolute() else self.root / self.settings.baselines
        return baseline_path(folder, self.settings.model_name, width if not self.settings.predictor else "classic")

    def model(self, width: str):  # -> pricer.models.LoadedModel
        s = self.settings
        return self.models.get(s.model, bits=int(width.removesuffix("bit")), adapter=s.adapter, device=s.device)

    def release(self, width: str) -> None:
        """Free a width's model once its tests are done; its run stays cached."""
        if self.settings.predictor:
            return
        s = self.settings
        self.models.release(self.models.key(s.model, bits=int(width.removesuffix("bit")), adapter=s.adapter, device=s.device))

    # ------------------------------------------------------------------ runs
    def run(self, width: str) -> RunResult:
        """The width's predictions on the items, computed once per session."""
        if width not in self._runs:
            self._runs[width], self._fingerprints[width] = self._predict(width)
        return self._runs[width]

    def fingerprint(self, width: str) -> Fingerprint:
        self.run(width)
        return self._fingerprints[width]

    def _predict(self, width: str) -> tuple[RunResult, Fingerprint]:
        s = self.settings
        flat: dict[str, Any] = {
            "data_sha256": items_digest(self.items),
            "n": len(self.items),
            "prompt": s.data.template or "text column",
            "data": s.data.source if not Path(s.data.source).exists() else Path(s.data.source).name,
            "split": s.data.split,
            "pricer": importlib.metadata.version("pricer"),
            **machine_info(),
        }
        if s.predictor:
            from pricer.classic import train_classic

            if Path(s.data.source).is_file():
                raise OptionError(f"--pricer-predictor {s.predictor}: {s.data.source} is a single file, so it has "
                                  "no 'train' split to train on; point --pricer-data at a folder with both")
            train = load_items(DataSpec(source=s.data.source, split="train", n=None, template=s.data.template))
            predictor = train_classic(s.predictor, train)
            flat |= {"predictor": s.predictor, "train_sha256": items_digest(train)}
        else:
            from pricer.predict import LLMPredictor

            loaded = self.model(width)
            predictor = LLMPredictor(loaded, batch_size=s.batch_size)
            info = loaded.info.to_dict()
            versions = info.pop("versions")
            flat |= info | {f"version_{k}": v for k, v in versions.items()} | predictor.policy.to_dict()
            # What is really in memory, not what was asked: catches a wrong width being loaded.
            flat["quantization"] = detected_quantization(loaded.model)
            flat["predictor"] = "llm"
            for noisy in ("path", "parameter_bytes"):
                flat.pop(noisy, None)
            if flat.get("adapter"):  # its folder's name, not where this checkout lives: adapter_sha256 decides
                flat["adapter"] = Path(flat["adapter"]).name
            import torch

            # How a CPU matmul splits its sums: at 16 bits (bf16) one fine-tuned decode of 250 flipped
            # between 1 and 2 threads.
            flat["torch_threads"] = torch.get_num_threads()
        result = evaluate(predictor, self.items)
        decisive = {k: flat[k] for k in DECISIVE if k in flat}
        context = {k: v for k, v in flat.items() if k not in decisive}
        return result, Fingerprint(decisive=decisive, context=context)

    # ------------------------------------------------------------------ gate
    def check(self, width: str) -> Verdict:
        """Compare the width's run with its baseline; rewrite the baseline when asked (and still fail)."""
        path = self.baseline_path(width)
        self.used_baselines.append(path)
        if not self.settings.update and not path.exists():  # before the minutes a model takes to run
            text = f"{path}: baseline not found; create it with:\n  {self.accept_command(width, reason='first baseline')}"
            self.outcomes.append(Outcome(width=width, path=path, text=text, passed=False))
            raise BaselineError(text)
        run = self.run(width)
        if self.settings.update:
            previous = read_baseline(path) if path.exists() else None
            write_baseline(path, run=run, fingerprint=self.fingerprint(width), reason=self.settings.reason or "",
                           previous=previous)
            moved = ""
            if previous is not None:
                delta = round(run.metrics.error - previous.metrics["error"], 2) + 0.0  # never "-0.00"
                moved = f" (Error ${previous.metrics['error']:,.2f} -> ${run.metrics.error:,.2f}, {delta:+,.2f})"
            text = f"{path}: baseline rewritten{moved}, reason: {self.settings.reason}; a rewrite never gates green, re-run to gate"
            self.outcomes.append(Outcome(width=width, path=path, text=text, passed=False))
            raise BaselineError(text)
        try:
            baseline = read_baseline(path)
        except BaselineError as exc:
            self.outcomes.append(Outcome(width=width, path=path, text=str(exc), passed=False))
            raise
        verdict = compare(baseline, run, self.fingerprint(width), self.settings.gate)
        self.outcomes.append(Outcome(width=width, path=path, text=self._summary_line(width, baseline, verdict),
                                     passed=verdict.passed))
        return verdict

    def detectability(self, width: str) -> tuple[float, float, str | None]:
        """(minimum detectable effect in $, as a share of Error, why it is too coarse to trust, or None)."""
        from pricer.metrics import score_item

        baseline = read_baseline(self.baseline_path(width))
        errors = sorted((score_item(b.guess, b.truth).error for b in baseline.items), reverse=True)
        mde = minimum_detectable_effect(errors, alpha=self.settings.gate.alpha)
        total = sum(errors)
        share = mde / (total / len(errors)) if total else float("inf")
        if len(errors) < SMALL_N:
            return mde, share, "too coarse to protect anything; raise --pricer-n"
        if share > MEANINGLESS_SHARE:
            # At a fine n the cause is a few huge errors, not the gate: say so rather than ask for more items.
            top = max(1, len(errors) // 100)
            return mde, share, (f"coarse because the baseline's {top} largest errors hold "
                                f"{sum(errors[:top]) / total:.0%} of its Error and this rule of thumb lets every "
                                "item move that widely; the paired test sees only the items that change")
        return mde, share, None

    def ladder(self) -> list[Tax]:
        """Every width below 32 bits against the 32-bit run of this session."""
        others = {w: self.run(w) for w in self.settings.widths if w != "32bit"}
        return quantization_ladder(self.run("32bit"), others, max_tax_share=self.settings.max_tax_share,
                                   alpha=self.settings.gate.alpha)

    def accept_command(self, width: str, *, reason: str = "...") -> str:
        """The command that rewrites this width's baseline with this run's other options."""
        import shlex

        s = self.settings
        only = () if s.predictor else ("--pricer-bits", width.removesuffix("bit"))
        args = (*s.rerun_args, *only, "--update-baselines", "--pricer-reason", reason)
        return shlex.join(("pytest", *args))

    def _summary_line(self, width: str, baseline: Baseline, verdict: Verdict) -> str:
        d = verdict.delta
        if d is None:
            return f"{width}: {verdict.reasons[0]} ({', '.join(c.field for c in verdict.not_comparable)})"
        status = "ok" if verdict.passed else "WORSE"
        return (f"{width}: {status} Error ${verdict.baseline_error:,.2f} -> ${verdict.now_error:,.2f} "
                f"({d.mean:+,.2f}, CI [{d.ci[0]:+,.2f}, {d.ci[1]:+,.2f}], p={d.p_worse:.3f}); "
                f"detectable ${verdict.mde:,.2f}, tolerance ${verdict.tolerance:,.2f}")


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
