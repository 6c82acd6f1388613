"""session: what an LLM run records about how it was produced, so two machines' results are never mixed up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pricer.data import DATA_ENV, DataSpec
from pricer.session import EvalSession, EvalSettings

ADAPTER = Path(__file__).resolve().parents[1] / "adapters" / "smollm2-135m-pricer"


@pytest.fixture
def session(pytestconfig: pytest.Config, tmp_path: Path):
    source = os.environ.get(DATA_ENV)
    if not source:
        pytest.skip(f"set {DATA_ENV} to the pricer-data folder to run the default model on real items")
    settings = EvalSettings(data=DataSpec(source=str(pytestconfig.invocation_params.dir / source), n=2),
                            bits=(32,), adapter=ADAPTER)
    session = EvalSession(settings, root=tmp_path)
    yield session
    session.models.clear()


def test_an_llm_run_records_threads_dtypes_policy_and_the_adapter_by_name(session):
    import torch

    fingerprint = session.fingerprint("32bit")

    context, decisive = fingerprint.context, fingerprint.decisive
    # Thread count and compute dtype can flip greedy decodes on a CPU, so both travel with every result.
    assert context["torch_threads"] == torch.get_num_threads()
    assert context["compute_dtype"] == "float32" and context["batch_size"] == 8 and context["padding"] == "left"
    # The folder's name, not where this checkout lives; the weights' hash is what decides comparability.
    assert context["adapter"] == ADAPTER.name
    assert decisive["adapter_sha256"] is not None and len(decisive["adapter_sha256"]) == 64
    assert decisive["bits"] == 32 and decisive["quantization"] == "none"
    assert "path" not in context and "parameter_bytes" not in context
