"""One eval session: the items, each width's model loaded once, and each width's run made once. Where baselines
live is pricer.store.hardware's BaselineHome; what each width's gate decides is pricer.plugin.outcome's."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pricer.engines.device import machine_info
from pricer.engines.evaluate import RunResult, evaluate
from pricer.engines.widths import bits_of
from pricer.gate.ladder import Tax, ladder
from pricer.history.accuracy_history import accuracy_entry, append_accuracy
from pricer.plugin.outcome import WidthGates
from pricer.plugin.settings import EvalSettings
from pricer.store.baselines import write_run
from pricer.store.fingerprint import Fingerprint, llm_fields, split_fields
from pricer.store.hardware import BaselineHome
from pricer.store.machines import this_machine
from pricer.task.items import DataSpec, Item, identity_digest, items_digest, refuse_single_file
from pricer.task.load import load_items


def run_fields(items: list[Item], data: DataSpec) -> dict[str, Any]:
    """The fingerprint fields of any run on these items (the predictor adds its own): the items, prompt and machine."""
    return {
        "items_sha256": identity_digest(items),
        "prompts_sha256": items_digest(items),
        "n": len(items),
        "prompt": data.template or "text column",
        "data": data.source if not Path(data.source).exists() else Path(data.source).name,
        "split": data.split,
        "pricer": importlib.metadata.version("pricer"),
        **machine_info(),
    }


class EvalSession:
    """State of one pytest eval session; the plugin keeps exactly one in config.stash."""

    def __init__(self, settings: EvalSettings, *, root: Path) -> None:
        from pricer.engines.transformers.cache import ModelCache

        self.settings = settings
        self.root = root
        self.models = ModelCache()
        self.home = BaselineHome(folder=settings.baselines_folder(root), model_name=settings.model_name,
                                 classic=settings.predictor is not None, device=settings.device,
                                 asked_class=settings.baseline_class, update=settings.update,
                                 _machine_class=settings.endpoint.hardware_class if settings.endpoint else None)
        self.gates = WidthGates(self)
        self._items: list[Item] | None = None
        self._runs: dict[str, RunResult] = {}
        self._fingerprints: dict[str, Fingerprint] = {}
        self._served: dict[str, Any] = {}  # width -> EndpointPredictor, its server checked
        self._ladder: tuple[tuple[str, ...], list[Tax]] | None = None
        self.problems: list[str] = []  # outputs asked for that could not be written (charts), one line each

    @property
    def items(self) -> list[Item]:
        if self._items is None:
            self._items = load_items(self.settings.data)
        return self._items

    def model(self, width: str):  # -> pricer.engines.transformers.loading.LoadedModel
        s = self.settings
        return self.models.get(s.model, bits=bits_of(width), adapter=s.adapter, device=s.device)

    def release(self, width: str) -> None:
        """Free a width's model once its tests are done; its run stays cached."""
        if not self.settings.predictor:
            s = self.settings
            self.models.release(self.models.key(s.model, bits=bits_of(width), adapter=s.adapter, device=s.device))

    def served(self, width: str):  # -> pricer.engines.endpoint.predictor.EndpointPredictor | None
        """The width's served model, its health and model id checked (EndpointError if not), once; None when the
        model is loaded here."""
        if self.settings.endpoint is None:
            return None
        if width not in self._served:
            from pricer.engines.endpoint.predictor import EndpointPredictor

            self._served[width] = EndpointPredictor(self.settings.endpoint, width=width)
        return self._served[width]

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
        path = Path(folder) / self.home.path(width).relative_to(self.home.folder)
        write_run(path, run=self.run(width), fingerprint=self.fingerprint(width),
                  reason=f"run saved by --pricer-save-runs ({width})", previous=None)
        return path

    def record_accuracy(self, path: Path, verdicts: Mapping[str, bool]) -> str:
        """Append one accuracy history entry per gated width (`--pricer-history`); returns the line to print."""
        from pricer.files import today
        from pricer.store.fingerprint import commit_info

        commit, machine, date = commit_info(self.root), this_machine(), today()
        entries = [accuracy_entry(model=self.settings.model_name, width=width, run=self.run(width),
                                  fingerprint=self.fingerprint(width), passed=passed, commit=commit, machine=machine,
                                  date=date)
                   for width, passed in verdicts.items()]
        append_accuracy(path, entries)
        return f"{path}: appended {len(entries)} accuracy entries ({', '.join(verdicts)})"

    def ladder(self, *, run_missing: bool = True) -> list[Tax]:
        """Every width below 32 bits against the 32-bit run, computed once for the same runs (the ladder test and
        the summary ask both); `run_missing=False` uses only the runs already made or adopted."""
        runs = {w: self.run(w) for w in self.settings.widths} if run_missing else self.runs
        if self._ladder is None or self._ladder[0] != tuple(runs):
            self._ladder = (tuple(runs), ladder(runs, max_tax_share=self.settings.max_tax_share,
                                                alpha=self.settings.gate.alpha))
        return self._ladder[1]

    def _predict(self, width: str) -> tuple[RunResult, Fingerprint]:
        s = self.settings
        flat = run_fields(self.items, s.data)
        if s.endpoint is not None:  # a served model: asked over HTTP, identified by what the server says
            served = self.served(width)
            run = evaluate(served, self.items)
            return run, split_fields(flat | served.fields())
        if s.predictor:
            from pricer.engines.classic import train_classic

            refuse_single_file(s.data.source, option=f"--pricer-predictor {s.predictor}")
            train = load_items(DataSpec(source=s.data.source, split="train", n=None, template=s.data.template))
            predictor = train_classic(s.predictor, train)
            flat |= {"predictor": s.predictor, "train_sha256": items_digest(train)}
        else:
            from pricer.engines.predict import LLMPredictor

            loaded = self.model(width)
            policy = self.gates.batching(width)  # the baseline's, so that its batch composition is reproduced
            size, budget = (policy.batch_size, policy.token_budget) if policy else (s.batch_size, s.token_budget)
            predictor = LLMPredictor(loaded, batch_size=size, token_budget=budget)
            flat |= llm_fields(loaded, predictor.policy.to_dict())
        return evaluate(predictor, self.items), split_fields(flat)
