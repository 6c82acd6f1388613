"""The endpoint engine against a small OpenAI-compatible server written here (stdlib http.server on 127.0.0.1, no
model): its answers swapped behind the same model id, 429s with huge Retry-After, silence, an endless body, a kill
mid-run, credentials, a model id that is a machine path. Light: every answer is a price computed from the prompt."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pricer.engines.endpoint.config import EndpointConfig

pytestmark = pytest.mark.e2e  # a server, a second process or a wheel: `pytest -m e2e`

N = 8
MODEL = "price-model"
FAST = {"retries": 2, "backoff": 0.05, "read_timeout": 5.0, "concurrency": 2}


class FakeServer(ThreadingHTTPServer):
    """An OpenAI-compatible server whose completions are `answer(prompt)`; `fault` plays one misbehaviour on the
    paths it names ("all" or "completions"): 429 with a huge Retry-After, silence, an endless body."""

    daemon_threads = True

    def __init__(self, answer: Callable[[str], str], *, model: str = MODEL) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer, self.model = answer, model
        self.owned_by = "fake"  # what /v1/models says of the engine
        self.answer_model: str | None = None  # the model id completions name; None: the one asked for
        self.fault: tuple[str, str] | None = None  # (kind, "all" | "completions")
        self.faults_left: int | None = None  # times the fault is played; None: always
        self.completions = 0
        self.kill_after: int | None = None  # completions answered before the server dies
        self.killed = False
        self.headers_seen: list[str] = []  # every Authorization header received
        self.released = threading.Event()  # ends silent handlers at teardown
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up leaves a broken pipe: expected here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def kill(self) -> None:
        """Stop listening and drop open connections: later ones are refused, as after a kill -9."""
        self.killed = True
        self.released.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeServer

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, payload: object, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _fault(self, completions: bool) -> bool:
        """Play the planted fault if it applies to this path; True when it did."""
        fault = self.server.fault
        if fault is None or (fault[1] == "completions" and not completions) or self.server.faults_left == 0:
            return False
        if self.server.faults_left is not None:
            self.server.faults_left -= 1
        kind = fault[0]
        if kind == "429":
            self._send(429, {"error": {"message": "slow down"}}, {"Retry-After": "99999"})
        elif kind == "silent":
            self.server.released.wait(600)
            self.close_connection = True
        elif kind == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 65536
            try:
                while not self.server.released.is_set():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:
                pass
            self.close_connection = True
        return True

    def do_GET(self) -> None:
        self.server.headers_seen.append(self.headers.get("Authorization") or "")
        if self._fault(completions=False):
            return
        if self.path == "/health":
            self._send(200, {"status": "ok"})
        elif self.path == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": self.server.model, "owned_by": self.server.owned_by}]})
        else:
            self._send(404, {"detail": "Not Found"})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.headers_seen.append(self.headers.get("Authorization") or "")
        with self.server.lock:
            if self.server.killed:  # a kept-alive connection of a killed server: dropped without an answer
                self.close_connection = True
                return
            self.server.completions += 1
            if self.server.completions == self.server.kill_after:
                self.server.killed = True
                threading.Thread(target=self.server.kill, daemon=True).start()
        if self._fault(completions=True):
            return
        model = self.server.answer_model or request["model"]
        self._send(200, {"model": model, "choices": [{"index": 0, "text": self.server.answer(request["prompt"])}]})


@pytest.fixture(scope="module")
def items(data_dir: Path):
    from pricer.task.items import DataSpec
    from pricer.task.load import load_items

    return load_items(DataSpec(source=str(data_dir), split="test", n=N))


def honest(items) -> Callable[[str], str]:
    """A model that knows every price."""
    truths = {item.prompt: item.price for item in items}
    return lambda prompt: f"{truths[prompt]:.2f}"


def tripled(items) -> Callable[[str], str]:
    """Other weights behind the same model id: every price three times over."""
    truths = {item.prompt: item.price for item in items}
    return lambda prompt: f"{3 * truths[prompt]:.2f}"


@pytest.fixture
def served(items):
    server = FakeServer(honest(items))
    yield server
    server.kill()


def config(url: str, store: Path, **limits) -> EndpointConfig:
    return EndpointConfig(urls=(("32bit", url),), model=MODEL, store=store, **(FAST | limits))


def session(url: str, *, data: Path, folder: Path, update: bool, **limits):
    from pricer.plugin.session import EvalSession, EvalSettings
    from pricer.task.items import DataSpec

    settings = EvalSettings(data=DataSpec(source=str(data), n=N), bits=(32,), baselines=folder / "baselines",
                            update=update, reason="made by tests/e2e/test_endpoint_faults.py",
                            endpoint=config(url, folder / "store", **limits))
    return EvalSession(settings, root=folder / "baselines")


def baseline(url: str, *, data: Path, folder: Path) -> None:
    from pricer.errors import BaselineError

    with pytest.raises(BaselineError, match="a rewrite never gates green"):
        session(url, data=data, folder=folder, update=True).gates.check("32bit")


# --- 1. Every gate asks the server ------------------------------------------------------------------------------


def test_a_gate_fails_when_other_weights_answer_behind_the_same_model_id(served, items, data_dir, tmp_path):
    baseline(served.url, data=data_dir, folder=tmp_path)
    served.answer = tripled(items)  # same id, same /v1/models, other answers
    before = served.completions
    gated = session(served.url, data=data_dir, folder=tmp_path, update=False)
    verdict = gated.gates.check("32bit")
    assert not verdict.passed
    assert served.completions - before == N  # every item asked again, none answered from an earlier run
    fields = gated.fingerprint("32bit").context
    assert (fields["endpoint_answers_asked"], fields["endpoint_answers_reused"]) == (N, 0)
    assert fields["endpoint_answer_model"] == MODEL  # what each completion said answered it
    # The width is named by its URL: no --pricer-bits, which a served run refuses.
    assert "--pricer-bits" not in gated.gates.accept_command("32bit")


def test_answers_of_an_unfinished_run_are_reused_after_a_proof_and_discarded_when_it_fails(served, items, tmp_path):
    from pricer.engines.endpoint.predictor import PROOF, EndpointPredictor

    prompts = [item.prompt for item in items]
    first = EndpointPredictor(config(served.url, tmp_path, concurrency=1), width="32bit")
    first.complete(prompts[:5])  # finished: nothing kept
    assert not first.store.path.exists()
    # An unfinished run: 6 of 8 answered and stored, then it was killed.
    for i in range(6):
        first.store.add(first.store_key(prompts[i]), honest(items)(prompts[i]))
    resumed = EndpointPredictor(config(served.url, tmp_path, concurrency=1), width="32bit")
    before = served.completions
    resumed.complete(prompts)
    assert served.completions - before == PROOF + 2
    assert (resumed.answers_asked, resumed.answers_reused) == (PROOF + 2, 6 - PROOF)

    for i in range(6):
        first.store.add(first.store_key(prompts[i]), honest(items)(prompts[i]))
    served.answer = tripled(items)
    swapped = EndpointPredictor(config(served.url, tmp_path, concurrency=1), width="32bit")
    before = served.completions
    assert swapped.complete(prompts) == [tripled(items)(p) for p in prompts]
    assert served.completions - before == PROOF + N  # the proof failed: every item asked
    assert (swapped.answers_asked, swapped.answers_reused, swapped.discarded) == (N, 0, 6)


# --- 2. Bounded time ---------------------------------------------------------------------------------------------

DEADLINE = 5.0  # seconds, --pricer-endpoint-deadline in the runs below
# Seconds a pytest process takes to start, import the plugin, load the items and write its reports, on a busy
# 2-core machine (measured 4-9 s): the bound on a run is its deadline plus this.
STARTUP = 25.0

EVAL_TEST = """
import pytest

pytestmark = pytest.mark.eval


def test_accuracy_holds_against_baseline(pricer_gate):
    pricer_gate.check()
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(test_price_gate=EVAL_TEST)
    return pytester


def gate(project: pytest.Pytester, url: str, data: Path, *args: str, n: int = 4) -> tuple[pytest.RunResult, float]:
    """`pytest -m eval --update-baselines` through the server, in a process of its own: its result and seconds."""
    start = time.monotonic()
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-m", "eval", f"--pricer-endpoint={url}", "--pricer-endpoint-model", MODEL,
        "--pricer-n", str(n), "--pricer-data", str(data), "--pricer-baselines", str(project.path / "baselines"),
        "--update-baselines", "--pricer-reason", "first", *args, timeout=DEADLINE + 2 * STARTUP)
    return result, time.monotonic() - start


@pytest.mark.parametrize("kind, where, said", [
    ("429", "all", "slow down"),
    ("429", "completions", "slow down"),
    ("silent", "all", "the run's deadline (5 s, --pricer-endpoint-deadline) passed"),
    ("silent", "completions", "the run's deadline (5 s, --pricer-endpoint-deadline) passed"),
    ("endless", "completions", "the answer goes on past 1024 KiB"),
])
def test_a_misbehaving_server_fails_the_gate_within_its_deadline_and_pytest_exits(served, project, data_dir, kind,
                                                                                   where, said):
    served.fault = (kind, where)
    result, seconds = gate(project, served.url, data_dir, "--pricer-endpoint-deadline", str(DEADLINE))
    result.assert_outcomes(failed=1)
    assert said in result.stdout.str()
    assert seconds < DEADLINE + STARTUP, f"{kind} on {where}: {seconds:.1f} s"
    if where == "completions":  # no answer, so no stored file to name
        assert "No answer was stored: run again to ask every item" in result.stdout.str()
    assert not (project.path / "baselines").exists()


def test_a_retry_after_longer_than_the_cap_is_waited_only_up_to_the_cap(served, items, tmp_path, monkeypatch):
    from pricer.engines.endpoint import client
    from pricer.engines.endpoint.predictor import EndpointPredictor

    monkeypatch.setattr(client, "RETRY_AFTER_CAP", 0.5)  # 30 s in use: too long for a test
    served.fault, served.faults_left = ("429", "completions"), 1  # Retry-After: 99999, once
    predictor = EndpointPredictor(config(served.url, tmp_path, deadline=600.0), width="32bit")
    start = time.monotonic()
    assert predictor.complete([items[0].prompt]) == [honest(items)(items[0].prompt)]
    assert 0.5 <= time.monotonic() - start < 5.0
    assert served.completions == 2


def test_a_server_killed_mid_run_stops_the_gate_at_the_circuit_breaker_not_after_every_items_retries(
        served, project, data_dir):
    served.kill_after = 3
    # 40 items at concurrency 1: each one's 5 retries (15.5 s of backoff) would take 10 minutes.
    result, seconds = gate(project, served.url, data_dir, "--pricer-concurrency", "1", n=40)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*37 of 40 items got no answer*the circuit breaker is open*"])
    assert seconds < 15.5 + STARTUP  # one item's backoff (0.5 + 1 + 2 + 4 + 8 s), then the breaker
    assert served.completions == 3


# --- 3. Credentials ------------------------------------------------------------------------------------------------

SECRET = "pl4nted-s3cret-Zq9"


@pytest.mark.parametrize("way", ["password in the URL", "API key"])
def test_credentials_are_sent_and_found_in_no_output_file_nor_the_terminal(served, items, project, data_dir,
                                                                          monkeypatch, way):
    import base64

    from pricer.engines.endpoint.config import API_KEY_ENV

    url = served.url
    if way == "API key":
        monkeypatch.setenv(API_KEY_ENV, SECRET)  # the subprocess inherits it
        expected = f"Bearer {SECRET}"
    else:
        url = url.replace("://", f"://gater:{SECRET}@")
        expected = "Basic " + base64.b64encode(f"gater:{SECRET}".encode()).decode()
    made, _ = gate(project, url, data_dir, n=N)
    made.assert_outcomes(failed=1)  # a rewrite never gates green
    served.answer = tripled(items)  # so that the gate fails and prints the command that accepts it
    reports = ("--pricer-save-runs", "runs", "--pricer-summary", "summary.md", "--pricer-history", "history.jsonl",
               "--junitxml", "junit.xml")
    start = time.monotonic()
    judged = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-m", "eval", f"--pricer-endpoint={url}", "--pricer-endpoint-model", MODEL,
        "--pricer-n", str(N), "--pricer-data", str(data_dir), "--pricer-baselines", str(project.path / "baselines"),
        *reports, timeout=2 * STARTUP)
    assert time.monotonic() - start < 2 * STARTUP
    judged.assert_outcomes(failed=1)
    assert "--update-baselines" in judged.stdout.str()  # the accepting command was printed
    assert set(served.headers_seen) == {expected}  # sent with every request
    written = [path for path in project.path.rglob("*") if path.is_file()]
    assert {"summary.md", "history.jsonl", "junit.xml", "32bit.json"} <= {path.name for path in written}
    assert [path for path in written if SECRET.encode() in path.read_bytes()] == []
    for result in (made, judged):
        assert SECRET not in result.stdout.str() + result.stderr.str()


# --- 4. Identity and answers that lie ----------------------------------------------------------------------------


def test_a_completion_naming_another_model_stops_the_run(served, items, tmp_path):
    from pricer.engines.endpoint.client import EndpointError
    from pricer.engines.endpoint.predictor import EndpointPredictor

    served.answer_model = "someone/else-7b"
    predictor = EndpointPredictor(config(served.url, tmp_path, concurrency=1), width="32bit")
    with pytest.raises(EndpointError, match="the answer names model 'someone/else-7b', not 'price-model' .*stopped"):
        predictor.complete([item.prompt for item in items])
    assert served.completions == 1


def test_a_model_served_under_a_path_on_its_machine_is_refused_naming_the_alias_to_give(items, tmp_path):
    from pricer.engines.endpoint.client import EndpointError
    from pricer.engines.endpoint.predictor import EndpointPredictor

    server = FakeServer(honest(items), model="/home/me/models/smollm2-135m-instruct.Q4_1.gguf")
    try:
        with pytest.raises(EndpointError, match="names its model by a path on its machine .*--model_alias NAME"):
            EndpointPredictor(EndpointConfig(urls=(("4bit", server.url),), store=tmp_path), width="4bit")
        assert server.completions == 0
    finally:
        server.kill()


def test_an_unserved_model_id_fails_naming_what_the_server_serves_not_a_missing_baseline(served, project, data_dir):
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-m", "eval", f"--pricer-endpoint={served.url}", "--pricer-endpoint-model", "nope",
        "--pricer-n", "4", "--pricer-data", str(data_dir), timeout=2 * STARTUP)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*/v1/models: the server does not serve model 'nope'; it serves 'price-model'*"])
    assert "baseline not found" not in result.stdout.str()


@pytest.mark.parametrize("given", ["endpoint_model", "concurrency", "endpoint_deadline"])
def test_options_only_a_served_model_takes_are_refused_without_an_endpoint(given):
    import argparse

    from pricer.engines.endpoint.config import endpoint_config
    from pricer.options.table import OPTIONS

    flags = {option.name: option.plugin for option in OPTIONS}
    with pytest.raises(argparse.ArgumentTypeError, match=f"{flags[given]} applies to a served model, and without "
                                                         "--pricer-endpoint the model is loaded here"):
        endpoint_config({given: 2}, deterministic=False, given=[given], flag=flags.get)


# --- 5. Engines ----------------------------------------------------------------------------------------------------


def test_another_engine_serving_the_same_model_name_neither_passes_nor_rewrites_the_baseline(items, data_dir,
                                                                                               tmp_path):
    from pricer.errors import BaselineError

    first = FakeServer(honest(items))  # owned_by "fake"
    try:
        baseline(first.url, data=data_dir, folder=tmp_path)
    finally:
        first.kill()
    other = FakeServer(honest(items))
    other.owned_by = "me"  # as llama-cpp-python says, under the same model id
    try:
        written = (tmp_path / "baselines").rglob("32bit.json")
        before = [path.read_bytes() for path in written]
        for update in (False, True):
            gated = session(other.url, data=data_dir, folder=tmp_path, update=update)
            with pytest.raises(BaselineError, match="owned_by 'fake' .*this one says 'me' .*another engine shares"):
                gated.gates.check("32bit")
        assert [path.read_bytes() for path in (tmp_path / "baselines").rglob("32bit.json")] == before
    finally:
        other.kill()
