"""session: what an LLM run records about how it was produced, so two machines' results are never mixed up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pricer.engines.cpu_threads import wait_policy
from pricer.plugin.session import EvalSession, EvalSettings
from pricer.task.items import DataSpec

ADAPTER = Path(__file__).resolve().parents[2] / "adapters" / "smollm2-135m-pricer"


@pytest.fixture
def session(data_dir: Path, tmp_path: Path):
    settings = EvalSettings(data=DataSpec(source=str(data_dir), n=2), bits=(32,), adapter=ADAPTER)
    session = EvalSession(settings, root=tmp_path)
    yield session
    session.models.clear()


def test_an_llm_run_records_threads_dtypes_policy_and_the_adapter_by_name(session):
    import torch

    fingerprint = session.fingerprint("32bit")

    context, decisive = fingerprint.context, fingerprint.decisive
    # Thread count and compute dtype can flip greedy decodes on a CPU, so both travel with every result.
    assert context["torch_threads"] == torch.get_num_threads()
    # How its threads waited: speed only, so context (pricer.engines.cpu_threads sets PASSIVE unless the user chose).
    assert context["omp_wait_policy"] == wait_policy(os.environ) and "omp_wait_policy" not in decisive
    assert context["compute_dtype"] == "float32" and context["padding"] == "left"
    assert context["token_budget"] and context["order"] == "length"  # no baseline yet: the device's default
    # The folder's name, not where this checkout lives; the weights' hash is what decides comparability.
    assert context["adapter"] == ADAPTER.name
    assert decisive["adapter_sha256"] is not None and len(decisive["adapter_sha256"]) == 64
    assert decisive["bits"] == 32 and decisive["quantization"] == "none"
    assert "path" not in context and "parameter_bytes" not in context


def _baseline_with_batching(session: EvalSession, width: str, context: dict) -> Path:
    """A stored baseline for width whose fingerprint records the given batching (what matters here)."""
    from pricer.engines.evaluate import RunResult
    from pricer.engines.predict import Prediction
    from pricer.store.baselines import write_baseline
    from pricer.store.fingerprint import Fingerprint
    from pricer.task.metrics import score_items, summarize

    items = session.items
    predictions = [Prediction(guess=10.0, completion="10", parsed=True) for _ in items]
    scores = score_items([10.0] * len(items), [i.price for i in items])
    run = RunResult(name="stub", items=tuple(items), predictions=tuple(predictions), scores=tuple(scores),
                    metrics=summarize(scores), seconds=0.0)
    path = session.home.path(width)
    write_baseline(path, run=run, fingerprint=Fingerprint(decisive={}, context=context), reason="test", previous=None)
    return path


def test_baselines_live_in_a_folder_of_this_machines_hardware_class(session):
    path = session.home.path("32bit")
    assert path.parent.name == session.home.machine_class
    assert session.home.machine_class.split("-")[0] in ("cpu", "cuda") and not session.home.cross_class


def test_gating_reuses_the_batching_its_baseline_was_made_with(session):
    _baseline_with_batching(session, "32bit", {"batch_size": 3, "order": "input"})
    context = session.fingerprint("32bit").context
    assert (context["batch_size"], context["token_budget"], context["order"]) == (3, None, "input")


def test_a_missing_class_baseline_names_the_classes_that_exist(session):
    from pricer.errors import BaselineError

    own = session.home.path("32bit")
    other = own.parent.parent / ("cuda-bfloat16" if session.home.machine_class != "cuda-bfloat16" else "cpu-float32")
    other.mkdir(parents=True)
    (other / "32bit.json").write_text("{}")
    with pytest.raises(BaselineError, match=rf"baselines of 32bit exist for {other.name}: .*--pricer-baseline-class"):
        session.gates.check("32bit")
