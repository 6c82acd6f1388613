"""One eval session: its settings, the items, each width's model loaded once, runs and verdicts."""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pricer.baselines import Baseline, baseline_path, read_baseline, write_baseline
from pricer.cpu_threads import wait_policy
from pricer.data import DataSpec, Item, items_digest, load_items
from pricer.errors import BaselineError, OptionError
from pricer.evaluate import RunResult, evaluate
from pricer.fingerprint import DECISIVE, Fingerprint, machine_info
from pricer.gate import Detectable, GateConfig, Tax, Verdict, compare, quantization_ladder

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
    batch_size: int | None = None  # fixed batches in input order; with token_budget None: the baseline's policy
    token_budget: int | None = None
    baseline_class: str | None = None  # gate against another hardware class's baseline on purpose
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
class Detectability:
    """What a width's gate can see before it runs: per measure, and why it is too coarse to trust, if it is."""

    measures: tuple[Detectable, ...]
    too_coarse: str | None = None  # a warning: no continuous measure can see a 25% worsening, or n is small
    note: str | None = None  # printed: one measure is coarse but another sees what it misses
    tail: str = ""  # what the tail rule sees with this baseline, and what it cannot


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
        self._class: str | None = None
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

    @property
    def hardware_class(self) -> str | None:
        """This machine's class (device kind and compute dtype); None for a classic predictor."""
        if self.settings.predictor:
            return None
        if self._class is None:
            from pricer.hardware import this_class

            self._class = this_class(self.settings.device)
        return self._class

    @property
    def baseline_class(self) -> str | None:
        """The class whose baselines this run is gated against: --pricer-baseline-class, else this machine's.
        A rewrite always goes to this machine's own class."""
        if self.settings.predictor:
            return None
        return self.hardware_class if self.settings.update else (self.settings.baseline_class or self.hardware_class)

    @property
    def cross_class(self) -> bool:
        return self.baseline_class != self.hardware_class

    def baseline_path(self, width: str) -> Path:
        folder = self.settings.baselines if self.settings.baselines.is_absolute() else self.root / self.settings.baselines
        if self.settings.predictor:
            return baseline_path(folder, self.settings.model_name, "classic")
        return baseline_path(folder, self.settings.model_name, width, hardware_class=self.baseline_class)

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

    @property
    def runs(self) -> dict[str, RunResult]:
        """The runs made (or adopted) so far, in width order; none is computed by asking."""
        return {w: self._runs[w] for w in self.settings.widths if w in self._runs}

    def add_run(self, width: str, run: RunResult, fingerprint: Fingerprint) -> None:
        """Adopt a run made in another process (an xdist worker): the ladder and the history then use it."""
        self._runs[width], self._fingerprints[width] = run, fingerprint

    def save_run(self, folder: Path, width: str) -> Path:
        """Store the width's run under folder, where its baseline sits under the baselines folder, in the baseline
        format: `pricer ladder` reads the runs of CI jobs that gated one width each."""
        baselines = self.root / self.settings.baselines  # an absolute baselines folder stays as it is
        path = Path(folder) / self.baseline_path(width).relative_to(baselines)
        write_baseline(path, run=self.run(width), fingerprint=self.fingerprint(width),
                       reason=f"run saved by --pricer-save-runs ({width})", previous=None)
        return path

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
            loaded = self.model(width)
            predictor = self._llm_predictor(width, loaded)
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
            # How waiting threads wait (pricer.cpu_threads): speed only, no arithmetic, so never decisive.
            flat["omp_wait_policy"] = wait_policy(os.environ)
        result = evaluate(predictor, self.items)
        decisive = {k: flat[k] for k in DECISIVE if k in flat}
        context = {k: v for k, v in flat.items() if k not in decisive}
        return result, Fingerprint(decisive=decisive, context=context)

    # ------------------------------------------------------------------ gate
    def check(self, width: str) -> Verdict:
        """Compare the width's run with its baseline; rewrite the baseline when asked (and still fail)."""
        path = self.baseline_path(width)
        self.used_baselines.append(path)
        asked = self.settings.baseline_class
        if self.settings.update and asked and not self.settings.predictor and asked != self.hardware_class:
            # A baseline holds the greedy decodes of the class it was made on: this machine cannot make another's.
            text = (f"--update-baselines with --pricer-baseline-class {asked}: this machine's hardware class is "
                    f"{self.hardware_class}, and a baseline is written only for the class it is made on; run the "
                    f"update on a {asked} machine, or leave out --pricer-baseline-class to rewrite {path}")
            self.outcomes.append(Outcome(width=width, path=path, text=text, passed=False))
            raise OptionError(text)
        if not self.settings.update and not path.exists():  # before the minutes a model takes to run
            accept = self.accept_command(width, reason="first baseline")
            if self.cross_class:  # never the command that would rewrite this machine's own class instead
                text = (f"{path}: baseline not found; a {self.baseline_class} baseline is made on a "
                        f"{self.baseline_class} machine, with:\n  {accept}")
            else:
                text = f"{path}: baseline not found; create it with:\n  {accept}"
            text += self._other_classes(width, path)
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
                if len(run.items) < len(previous.items):  # e.g. a --pricer-n 4 trial rewriting the committed 250
                    moved += (f"; WARNING: {len(run.items)} items replace {len(previous.items)}, so later gates "
                              f"see only {len(run.items)}: restore it from git unless that is meant")
            text = f"{path}: baseline rewritten{moved}, reason: {self.settings.reason}; a rewrite never gates green, re-run to gate"
            self.outcomes.append(Outcome(width=width, path=path, text=text, passed=False))
            raise BaselineError(text)
        try:
            baseline = read_baseline(path)
        except BaselineError as exc:
            self.outcomes.append(Outcome(width=width, path=path, text=str(exc), passed=False))
            raise
        verdict = compare(baseline, run, self.fingerprint(width), self.settings.gate, cross_class=self.cross_class,
                          classes=(self.baseline_class, self.hardware_class))
        self.outcomes.append(Outcome(width=width, path=path, text=verdict.summary_line(width),
                                     passed=verdict.passed))
        return verdict

    def _llm_predictor(self, width: str, loaded):  # -> pricer.predict.LLMPredictor
        """The width's predictor: the batching asked for, else the one its baseline was made with (batch
        composition flips greedy decodes, so a class's baselines keep their policy), else the device's default."""
        from pricer.predict import DEFAULT_MAX_NEW_TOKENS, DecodingPolicy, LLMPredictor

        s = self.settings
        if s.batch_size is not None or s.token_budget is not None or s.update:
            return LLMPredictor(loaded, batch_size=s.batch_size, token_budget=s.token_budget)
        path = self.baseline_path(width)
        if path.exists():
            try:
                context = read_baseline(path).fingerprint.context
            except BaselineError:
                context = {}  # check() fails on it, naming the file
            policy = DecodingPolicy.batching_from(context, max_new_tokens=DEFAULT_MAX_NEW_TOKENS)
            if policy is not None:
                return LLMPredictor(loaded, batch_size=policy.batch_size, token_budget=policy.token_budget)
        return LLMPredictor(loaded)

    def _other_classes(self, width: str, path: Path) -> str:
        """Where else this width has baselines, and how to gate against one of them on purpose."""
        from pricer.hardware import stored_classes

        others = [c for c in stored_classes(path.parent.parent, width) if c != path.parent.name]
        if not others:
            return ""
        return (f"\nthis machine's hardware class is {self.hardware_class}; baselines of {width} exist for "
                f"{', '.join(others)}: gate against one on purpose with --pricer-baseline-class {others[0]} "
                "(compared with the cross-class rule)")

    def detectability(self, width: str) -> Detectability:
        """Per measure, the smallest worsening the gate sees at 80% power, and why it is too coarse, if it is."""
        from pricer.gate import detectable
        from pricer.tail import visibility

        baseline = read_baseline(self.baseline_path(width))
        found = detectable(baseline, self.settings.gate)
        rule = (self.settings.gate.across_classes() if self.cross_class else self.settings.gate).tail
        tail = visibility(rule, guesses=[b.guess for b in baseline.items], truths=[b.truth for b in baseline.items])
        n = len(baseline.items)
        if n < SMALL_N:
            return Detectability(measures=found, tail=tail,
                                 too_coarse="too coarse to protect anything; raise --pricer-n")
        continuous = [d for d in found if d.share is not None]
        coarse = [d for d in continuous if d.share > MEANINGLESS_SHARE]
        if not coarse:
            return Detectability(measures=found, tail=tail)
        shares = ", ".join(f"{d.measure} {d.share:.0%}" for d in coarse)
        if len(coarse) < len(continuous):  # another measure sees what this one cannot: worth a line, not a warning
            seeing = ", ".join(d.measure for d in continuous if d not in coarse)
            return Detectability(measures=found, tail=tail,
                                 note=f"{shares} of its level: coarse alone; {seeing} is finer")
        return Detectability(measures=found, tail=tail, too_coarse=f"neither Error nor log error can see a "
                                                        f"{MEANINGLESS_SHARE:.0%} worsening ({shares})")

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
        args = (*_without_baseline_class(s.rerun_args), *only, "--update-baselines", "--pricer-reason", reason)
        return shlex.join(("pytest", *args))


def _without_baseline_class(args: tuple[str, ...]) -> tuple[str, ...]:
    """Arguments without --pricer-baseline-class: an update writes this machine's own class, and refuses another."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--pricer-baseline-class":
            skip = True
        elif not arg.startswith("--pricer-baseline-class="):
            kept.append(arg)
    return tuple(kept)


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
