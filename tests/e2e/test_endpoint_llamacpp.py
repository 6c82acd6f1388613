"""docs/engines.md's llama.cpp recipe, run as written: llama-cpp-python's server on the default model's Q4_1 GGUF
under its alias, a first baseline, then a passing gate. Opt-in (`pytest -m llamacpp`): llama-cpp-python builds from
source in 5-10 minutes, so CI does not install it, and the test skips, saying why, where it is missing."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.llamacpp]

DOCS = Path(__file__).parents[2] / "docs" / "engines.md"
N = 8  # items per run: llama.cpp answers one in well under a second on a CPU
START_TIMEOUT = 120.0  # seconds to load a 135M GGUF and answer /v1/models; ~3 s on a busy 2-core CPU


def recipe() -> tuple[list[str], list[str]]:
    """The docs' llama-cpp-python server command and its pytest command, as argument lists (the GGUF's variable
    and the port are filled in by the caller)."""
    text = DOCS.read_text()
    block = text[text.index("CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'llama-cpp-python"):]
    block = block[:block.index("```")]
    server = next(line for line in block.splitlines() if line.startswith("python -m llama_cpp.server"))
    gate = next(line for line in block.splitlines() if line.startswith("pytest -m eval"))
    return shlex.split(server.removesuffix("&")), shlex.split(gate)


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """The docs' server command on a free port, for this module; skipped without llama-cpp-python."""
    import requests

    from pricer.engines.endpoint.serve import free_port
    from pricer.engines.transformers.default_model import default_gguf

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install "
                    "'llama-cpp-python[server]==0.3.36' (docs/engines.md)")
    command, _ = recipe()
    port = str(free_port())
    command = [sys.executable if word == "python" else str(default_gguf()) if word == "$GGUF" else
               port if word == "8080" else word for word in command]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env=os.environ | {"OMP_NUM_THREADS": "1"})
    end = time.monotonic() + START_TIMEOUT
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"{shlex.join(command)} exited with {process.returncode}:\n{log.read_text()[-2000:]}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > end:
                pytest.fail(f"{shlex.join(command)} did not answer /v1/models in {START_TIMEOUT:g} s")
            time.sleep(0.5)
        yield port
    finally:
        process.kill()
        process.wait(30)


def test_the_documented_llama_cpp_recipe_makes_a_baseline_then_passes_its_gate(llama_server, pytester, data_dir):
    _, gate = recipe()
    gate = [re.sub(r":8080/", f":{llama_server}/", word) for word in gate]
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_price_gate="import pytest\n\npytestmark = pytest.mark.eval\n\n\n"
                                        "def test_accuracy_holds_against_baseline(pricer_gate):\n"
                                        "    pricer_gate.check()\n")
    common = ["-p", "no:cacheprovider", *gate[1:], "--pricer-n", str(N), "--pricer-data", str(data_dir)]
    made = pytester.runpytest_subprocess(*common, "--update-baselines", "--pricer-reason", "first", timeout=300)
    made.assert_outcomes(failed=1)  # a rewrite never gates green
    written = pytester.path / "baselines" / "smollm2-135m-instruct-q4_1-served" / "cpu-float32" / "4bit.json"
    baseline = json.loads(written.read_text())
    recorded = {**baseline["fingerprint"]["decisive"], **baseline["fingerprint"]["context"]}
    assert recorded["model"] == "smollm2-135m-instruct-q4_1"
    assert recorded["endpoint_answer_model"] == "smollm2-135m-instruct-q4_1"
    assert recorded["engine_version"].startswith("🦙 llama.cpp Python API 0.3.")
    assert recorded["endpoint_owned_by"] == "me"
    assert str(Path.home()) not in written.read_text() and "/site-packages/" not in written.read_text()

    gated = pytester.runpytest_subprocess(*common, timeout=300)
    gated.assert_outcomes(passed=1)
