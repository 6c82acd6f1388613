"""The endpoint engine against a real server: `transformers serve` with the default model at 32 bits on 127.0.0.1,
alone or behind a small fault proxy (500s, 429 with Retry-After, a hang, a cut body, invalid JSON, a 400, another
model id), killed mid-run and restarted. The parsers and the answer store are tested without a server."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pricer.engines.endpoint.answer_store import AnswerStore
from pricer.engines.endpoint.client import EndpointError
from pricer.engines.endpoint.config import EndpointConfig, endpoint_config, endpoint_urls, joined_urls
from pricer.engines.endpoint.predictor import EndpointPredictor
from pricer.engines.endpoint.serve import SERVED_ID, ServedModel, missing_serving_module

pytestmark = pytest.mark.e2e  # a server, a second process or a wheel: `pytest -m e2e`

N = 8  # items per run: a busy 2-core CPU server answers one in 1-4 s
FAST = {"retries": 2, "backoff": 0.05, "read_timeout": 30.0, "concurrency": 2}  # tests wait for no long backoff
KILLED_AFTER = 6  # answers forwarded before the server is killed: more than PROOF, so some are reused
HANG = 2.5  # seconds the proxy holds a request: past the 1 s read timeout its test sets
CANNED = "42.00 canned"


# --- Without a server -------------------------------------------------------------------------------------------


def test_a_bare_url_is_gated_as_32bit_and_gets_v1_appended():
    assert endpoint_urls("--pricer-endpoint")("http://127.0.0.1:8000") == (("32bit", "http://127.0.0.1:8000/v1"),)


def test_width_urls_given_several_times_are_joined_in_width_order():
    parse = endpoint_urls("--pricer-endpoint")
    given = [parse("32bit=http://a:1/v1"), parse("4=http://b:2/v1/")]
    assert joined_urls(given, flag="--pricer-endpoint") == (("4bit", "http://b:2/v1"), ("32bit", "http://a:1/v1"))


@pytest.mark.parametrize("value, message", [
    ("3bit=http://a/v1", "width '3bit' is not one of"),
    ("127.0.0.1:8000", "is not an http(s) URL"),
])
def test_a_bad_endpoint_is_refused_naming_the_option(value, message):
    with pytest.raises(argparse.ArgumentTypeError, match=f"--pricer-endpoint: .*{re.escape(message)}"):
        endpoint_urls("--pricer-endpoint")(value)


def test_a_width_given_twice_is_refused():
    parse = endpoint_urls("--pricer-endpoint")
    with pytest.raises(argparse.ArgumentTypeError, match="32bit is given twice"):
        joined_urls([parse("http://a/v1"), parse("http://b/v1")], flag="--pricer-endpoint")


@pytest.mark.parametrize("given, message", [
    ({"bits"}, "--pricer-bits applies to a model loaded here; --pricer-endpoint asks a served model; name each "
               "server's width instead: 4bit=URL"),
    ({"adapter"}, "--pricer-adapter applies to a model loaded here"),
])
def test_options_only_a_loaded_model_takes_are_refused_with_an_endpoint(given, message):
    from pricer.options.table import OPTIONS

    flags = {option.name: option.plugin for option in OPTIONS}
    values = {"endpoint": [endpoint_urls("--pricer-endpoint")("http://a/v1")]}
    with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
        endpoint_config(values, deterministic=False, given=given, flag=flags.get)


def test_the_store_ignores_a_line_cut_short_and_appends_after_it(tmp_path):
    store = AnswerStore(tmp_path / "answers.jsonl")
    store.add("a", "12.99")
    store.add("b", "")  # an empty answer is never stored
    with open(store.path, "ab") as handle:  # a kill in mid-write
        handle.write(b'{"check": "0", "key": "c", "te')
    store.add("d", "7.50")
    assert store.load() == {"a": "12.99", "d": "7.50"}


def test_the_store_ignores_a_line_whose_check_fails(tmp_path):
    store = AnswerStore(tmp_path / "answers.jsonl")
    store.add("a", "12.99")
    store.path.write_text(store.path.read_text().replace("12.99", "99.99"))  # a hand edit
    assert store.load() == {}


def _append_many(path: str, worker: int, count: int) -> None:
    store = AnswerStore(Path(path))
    for i in range(count):
        store.add(f"{worker}-{i}", f"{i}.99 " + "x" * 5000)  # longer than a pipe's atomic write


def test_two_processes_appending_to_one_store_corrupt_no_line(tmp_path):
    path = tmp_path / "answers.jsonl"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_many, args=(str(path), w, 100)) for w in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert len(AnswerStore(path).load()) == 200
    assert len(path.read_bytes().splitlines()) == 200


# --- A real server ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """The default model served at 32 bits, for this module; skipped without `transformers serve`'s libraries."""
    missing = missing_serving_module()
    if missing:
        pytest.skip(f"`transformers serve` needs {missing}: pip install 'transformers[serving]'")
    served = ServedModel(tmp_path_factory.mktemp("served"))
    served.start()
    yield served
    served.kill()


@pytest.fixture(scope="module")
def items(data_dir: Path):
    from pricer.task.items import DataSpec
    from pricer.task.load import load_items

    return load_items(DataSpec(source=str(data_dir), split="test", n=N))


def _config(url: str, store: Path, **limits) -> EndpointConfig:
    return EndpointConfig(urls=(("32bit", url),), model=SERVED_ID, store=store, **(FAST | limits))


@pytest.fixture(scope="module")
def clean(server: ServedModel, items, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The server's answers to the items in one uninterrupted run."""
    store = tmp_path_factory.mktemp("clean-store")
    return EndpointPredictor(_config(server.url, store), width="32bit").complete([item.prompt for item in items])


def _stored_in_process_completions(root: Path) -> dict[int, str]:
    """The committed in-process 32-bit baseline's completions by item index (any class: 32 bits is float32 on every
    CPU class)."""
    found = sorted((root / "baselines" / "smollm2-135m-instruct").glob("cpu-*/32bit.json"))
    if not found:
        pytest.skip("no committed in-process 32-bit baseline of the default model")
    stored = json.loads(found[0].read_text())
    return {item["index"]: item["completion"] for item in stored["items"]}


def test_served_answers_equal_the_in_process_run_item_for_item(clean, items, pytestconfig):
    # The served model decodes one prompt at a time, unpadded; the baseline in left-padded token-budget batches.
    # Measured on 16 items: equal item for item against both batch-1 and token-budget in-process runs.
    stored = _stored_in_process_completions(pytestconfig.rootpath)
    assert clean == [stored[item.index] for item in items]


def test_a_recheck_asks_items_again_unstored_and_counts_changed_answers(server, items, clean, tmp_path):
    predictor = EndpointPredictor(_config(server.url, tmp_path, recheck=2), width="32bit")
    assert [p.completion for p in predictor.predict(items)] == clean
    # `transformers serve` without --continuous-batching decodes one request at a time: batch-invariant.
    assert predictor.recheck.line().startswith("0 of 2 answers changed when asked again at concurrency 1")
    assert predictor.asked == N + 2 and predictor.fields()["recheck"] == predictor.recheck.line()
    assert not predictor.store.path.exists()  # a finished run keeps no answers, rechecked ones are never stored


class FaultProxy(ThreadingHTTPServer):
    """A tiny HTTP server in front of the real one: plays planted faults on /v1/completions, one per request, else
    forwards; counts the completions it received and those it forwarded."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that gave up (the read timeout under test) leaves a broken pipe: expected, not news

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = upstream.removesuffix("/v1")
        self.faults: list[str] = []
        self.models: str | None = None  # a model id /v1/models claims instead of the real one
        self.received = self.forwarded = 0
        self.before_forward = None  # called with the forwarded count before each forward
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FaultProxy

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: bytes, *, headers: dict[str, str] | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/v1/models" and self.server.models:
            self._send(200, json.dumps({"object": "list", "data": [{"id": self.server.models}]}).encode())
        else:
            self._forward("GET", None)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.server.lock:
            self.server.received += 1
            fault = self.server.faults.pop(0) if self.server.faults else None
        if fault == "500":
            self._send(500, b'{"error": {"message": "planted failure"}}')
        elif fault == "429":
            self._send(429, b'{"error": {"message": "slow down"}}', headers={"Retry-After": "1"})
        elif fault == "hang":
            time.sleep(HANG)
            self.close_connection = True
        elif fault == "cut":
            self._send(200, b'{"choices": [{"te', length=200)
            self.close_connection = True
        elif fault == "canned":  # a quick answer, whatever the real server's speed
            self._send(200, json.dumps({"choices": [{"text": CANNED, "index": 0}]}).encode())
        elif fault == "not json":
            self._send(200, b"<html>gateway says hello</html>")
        elif fault == "400":
            self._send(400, b'{"error": {"message": "max_tokens is too large for this model"}}')
        else:
            self._forward("POST", body)

    def _forward(self, method: str, body: bytes | None) -> None:
        import requests

        if body is not None:
            with self.server.lock:
                if self.server.before_forward:
                    self.server.before_forward(self.server.forwarded)
                self.server.forwarded += 1
        try:
            answer = requests.request(method, self.server.upstream + self.path, data=body, timeout=120,
                                      headers={"Content-Type": "application/json"})
        except requests.RequestException:
            self._send(502, b'{"error": {"message": "upstream is down"}}')  # as a reverse proxy says it
            return
        self._send(answer.status_code, answer.content)


@pytest.fixture
def proxy(server: ServedModel):
    front = FaultProxy(server.url)
    yield front
    front.shutdown()
    front.server_close()


@pytest.mark.parametrize("fault", ["500", "429", "hang"])
def test_a_transient_failure_is_asked_again_and_answered(proxy, items, tmp_path, fault):
    proxy.faults = [fault, "canned"]  # canned: the retry's answer comes at once, however busy the real server
    predictor = EndpointPredictor(_config(proxy.url, tmp_path, read_timeout=1.0), width="32bit")
    start = time.monotonic()
    assert predictor.complete([items[0].prompt]) == [CANNED]
    assert proxy.received == 2
    if fault == "429":
        assert time.monotonic() - start >= 1.0  # Retry-After: 1 was honoured


@pytest.mark.parametrize("fault, cause", [
    ("cut", "the answer broke off"),
    ("not json", "with a body that is not JSON: b'<html>gateway says hello"),
])
def test_a_broken_answer_is_no_answer_named_and_never_stored(proxy, items, clean, tmp_path, fault, cause):
    proxy.faults = [fault]
    predictor = EndpointPredictor(_config(proxy.url, tmp_path, concurrency=1), width="32bit")
    with pytest.raises(EndpointError, match="1 of 2 items got no answer") as failed:
        predictor.complete([items[0].prompt, items[1].prompt])
    assert cause in str(failed.value)
    assert sorted(predictor.store.load().values()) == [clean[1]]  # the answered item only


def test_a_bad_request_stops_the_run_at_once_quoting_the_server(proxy, items, tmp_path):
    proxy.faults = ["400"]
    predictor = EndpointPredictor(_config(proxy.url, tmp_path, concurrency=1), width="32bit")
    with pytest.raises(EndpointError, match="HTTP 400: max_tokens is too large for this model .*stopped"):
        predictor.complete([item.prompt for item in items])
    assert proxy.received == 1


def test_items_unanswered_at_the_runs_deadline_are_no_answer(proxy, items, tmp_path):
    proxy.faults = ["hang", "hang"]
    start = time.monotonic()  # the deadline counts from here: the health and identity checks are in it
    predictor = EndpointPredictor(_config(proxy.url, tmp_path, deadline=1.5, retries=0), width="32bit")
    with pytest.raises(EndpointError, match=r"2 of 2 items got no answer.*\(2 x the run's deadline\)"):
        predictor.complete([items[0].prompt, items[1].prompt])
    assert time.monotonic() - start < HANG  # the run did not wait for the hanging requests


def test_a_server_serving_another_model_is_refused_before_any_request(proxy, tmp_path):
    proxy.models = "someone/else-7b"
    with pytest.raises(EndpointError, match=f"does not serve model '{SERVED_ID}'; it serves 'someone/else-7b'"):
        EndpointPredictor(_config(proxy.url, tmp_path), width="32bit")
    assert proxy.received == 0


def _session(url: str, *, data: Path, baselines: Path, store: Path, update: bool):
    from pricer.plugin.session import EvalSession, EvalSettings
    from pricer.task.items import DataSpec

    settings = EvalSettings(data=DataSpec(source=str(data), n=N), bits=(32,), baselines=baselines, update=update,
                            reason="made by tests/e2e/test_endpoint.py", endpoint=_config(url, store, concurrency=1))
    return EvalSession(settings, root=baselines)


def test_a_killed_server_restarted_resumes_asking_only_unanswered_items_with_the_same_verdict(
        server, proxy, clean, data_dir, tmp_path):
    from pricer.engines.endpoint.predictor import PROOF
    from pricer.errors import BaselineError

    baselines, store = tmp_path / "baselines", tmp_path / "store"
    first = _session(server.url, data=data_dir, baselines=baselines, store=tmp_path / "first", update=True)
    with pytest.raises(BaselineError, match="a rewrite never gates green"):
        first.gates.check("32bit")

    proxy.before_forward = lambda forwarded: server.kill() if forwarded == KILLED_AFTER else None
    killed = _session(proxy.url, data=data_dir, baselines=baselines, store=store, update=False)
    with pytest.raises(EndpointError, match=f"{N - KILLED_AFTER} of {N} items got no answer.*run again to ask only "):
        killed.gates.check("32bit")
    server.start()
    proxy.before_forward, forwarded = None, proxy.forwarded
    resumed = _session(proxy.url, data=data_dir, baselines=baselines, store=store, update=False)
    verdict = resumed.gates.check("32bit")
    assert verdict.passed
    # No answered item was asked again, but the proof that the restarted server answers as before.
    assert proxy.forwarded - forwarded == N - KILLED_AFTER + PROOF
    assert resumed.fingerprint("32bit").context["endpoint_answers_reused"] == KILLED_AFTER - PROOF
    assert [p.completion for p in resumed.run("32bit").predictions] == clean


def test_a_run_with_missing_answers_writes_no_baseline(proxy, data_dir, tmp_path):
    proxy.faults = ["500"] * 100  # every try of every item
    session = _session(proxy.url, data=data_dir, baselines=tmp_path / "baselines", store=tmp_path / "store",
                       update=True)
    with pytest.raises(EndpointError, match=f"{N} of {N} items got no answer.*8 x HTTP 500 after 2 retries"):
        session.gates.check("32bit")
    assert not (tmp_path / "baselines").exists()


def test_pricer_eval_asks_the_served_model_and_prints_the_report_line(server, monkeypatch, capsys, tmp_path,
                                                                     data_dir):
    from pricer.cli.main import main

    monkeypatch.setenv("PRICER_CACHE", str(tmp_path))
    assert main(["eval", "--endpoint", server.url, "--endpoint-model", SERVED_ID, "--data", str(data_dir), "--n",
                 str(N), "--quiet", "--no-charts"]) == 0
    assert capsys.readouterr().out.startswith(f"{SERVED_ID} 32bit served Error=$")
