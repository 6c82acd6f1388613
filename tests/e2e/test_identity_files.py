"""Every file that decides an answer is in a run's identity: a model folder's config, generation config, tokenizer
and chat template, and an adapter's config; a change names the file, and a baseline from before says what it lacks.
The default model (a copy of its folder, weights linked) and the committed adapter, at 32 bits on 4 items."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pricer.store import baselines

MORE_LATE_IMPORTS = ("torch", "transformers", "peft")
ADAPTER = Path(__file__).parents[2] / "adapters" / "smollm2-135m-pricer"
EVAL_TEST = """
import pytest

pytestmark = pytest.mark.eval


def test_accuracy_holds_against_baseline(pricer_gate):
    pricer_gate.check()
"""

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("late_imports", "one_torch_thread")]


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the default model's folder (its weights linked, not copied) and of the committed adapter."""
    from pricer.engines.transformers.default_model import converted_folder, default_gguf

    source = converted_folder(default_gguf())
    model = tmp_path / "model"
    model.mkdir()
    for file in source.iterdir():
        if file.suffix == ".safetensors":
            (model / file.name).symlink_to(file)
        elif file.name != "pricer-model.json":
            shutil.copy(file, model / file.name)
    adapter = tmp_path / "lora"
    shutil.copytree(ADAPTER, adapter)
    return model, adapter


def gate(pytester: pytest.Pytester, data: Path, model: Path, adapter: Path, *args: str) -> pytest.RunResult:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_price_gate=EVAL_TEST)
    return pytester.runpytest("-p", "no:cacheprovider", "-m", "eval", "-rA", f"--pricer-model={model}",
                              f"--pricer-adapter={adapter}", "--pricer-bits=32", "--pricer-n=4",
                              f"--pricer-data={data}", *args)


def edit_json(path: Path, **changes) -> None:
    path.write_text(json.dumps(json.loads(path.read_text()) | changes, indent=2))


def stored(pytester: pytest.Pytester) -> Path:
    (path,) = (pytester.path / "baselines").glob("*/*/32bit.json")
    return path


def test_a_changed_adapter_config_and_generation_config_are_named_as_what_changed(pytester, data_dir, folders):
    model, adapter = folders
    gate(pytester, data_dir, model, adapter, "--update-baselines", "--pricer-reason=first").assert_outcomes(failed=1)
    decisive = json.loads(stored(pytester).read_text())["fingerprint"]["decisive"]
    assert {"adapter_files/adapter_config.json", "model_files/config.json", "model_files/generation_config.json",
            "model_files/tokenizer.json", "model_files/tokenizer_config.json"} <= set(decisive)
    weights = decisive["adapter_sha256"], decisive["weights_sha256"]

    edit_json(adapter / "adapter_config.json", lora_alpha=32)
    edit_json(model / "generation_config.json", repetition_penalty=1.3)
    result = gate(pytester, data_dir, model, adapter)

    result.stdout.fnmatch_lines(["what changed since the baseline*", "  adapter_files/adapter_config.json: baseline '*', now '*'"])
    result.stdout.fnmatch_lines(["  model_files/generation_config.json: baseline '*', now '*'"])
    text = result.stdout.str()
    assert "adapter_sha256:" not in text and "weights_sha256:" not in text  # the weights are as they were
    assert weights == (decisive["adapter_sha256"], decisive["weights_sha256"])


def test_a_baseline_made_before_the_files_were_hashed_passes_and_says_what_it_lacks(pytester, data_dir, folders):
    model, adapter = folders
    gate(pytester, data_dir, model, adapter, "--update-baselines", "--pricer-reason=first").assert_outcomes(failed=1)
    path = stored(pytester)
    raw = json.loads(path.read_text())
    raw.pop("checksum")
    decisive = raw["fingerprint"]["decisive"]
    for name in [k for k in decisive if k.endswith(".json") or k.endswith(".jinja")]:
        del decisive[name]  # as pricer stored it before: the weights' hashes only
    path.write_text(json.dumps({**raw, "checksum": baselines._checksum(raw)}))

    result = gate(pytester, data_dir, model, adapter)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*32bit: the baseline predates the hashes of adapter_files/adapter_config.json, "
                                 "model_files/chat_template.jinja, model_files/config.json, *: a change to them since "
                                 "it was made cannot be named; rewrite it with --update-baselines to record them"])
    assert "describes another model" not in result.stdout.str()
    assert "adapter_files/adapter_config.json: baseline" not in result.stdout.str()
