"""``s2sft-serve`` (issue 15): the real server on a free 127.0.0.1 port, in a subprocess.

The model is the tiny save directory of the API tests (``conftest.train_tiny_save_dir``: distinct
inputs give distinct outputs). Oracle: the Python API (``S2SFT.generate``) called one input at a
time with the same settings, in this process. The batching, queue, disconnect and timeout tests
use servers whose batch window (``--max-wait-ms``) is long, so that what is waiting is known when
the test acts; ``/health`` counters say what the worker did.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
import torch

import s2sft_fairseq  # noqa: F401  (registers the plugin)
from conftest import BIN, toy_sources

SETTINGS = dict(beam=3, nbest=2, max_len=12)


# ---------------------------------------------------------------------------- a server in a subprocess
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(port, method, path, body=None, timeout=120):
    """(status, headers, parsed JSON or text) of one request on a new connection."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode("utf-8")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body is not None else {})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    try:
        payload = json.loads(data)
    except ValueError:
        payload = data.decode("utf-8", "replace")
    return response.status, {k.lower(): v for k, v in response.getheaders()}, payload


class Server:
    def __init__(self, checkpoint, log_dir, *args):
        self.port = free_port()
        self.log_path = os.path.join(log_dir, f"serve-{self.port}.log")
        env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([os.path.join(BIN, "s2sft-serve"), checkpoint, "--port", str(self.port),
                                          "--threads", "1", *map(str, args)], stdout=log, stderr=subprocess.STDOUT,
                                         env=env)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"s2sft-serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if call(self.port, "GET", "/health", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"s2sft-serve did not answer /health within 180 s:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-4000:]

    def post(self, body, timeout=120):
        return call(self.port, "POST", "/generate", body, timeout=timeout)

    def health(self) -> dict:
        status, _, payload = call(self.port, "GET", "/health", timeout=30)
        assert status == 200, payload
        return payload

    def wait_for(self, condition, what, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            health = self.health()
            if condition(health):
                return health
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}: {self.health()}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def checkpoint(tiny_save_dir):
    return os.path.join(tiny_save_dir[0], "checkpoint_best.pt")


@pytest.fixture(scope="module")
def start(checkpoint, tmp_path_factory):
    servers = []
    log_dir = str(tmp_path_factory.mktemp("serve_logs"))

    def _start(*args):
        servers.append(Server(checkpoint, log_dir, *args))
        return servers[-1]
    yield _start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def server(start):
    """Batches form within 50 ms; up to 64 inputs per request."""
    return start("--max-wait-ms", 50, "--max-inputs", 64)


@pytest.fixture(scope="module")
def slow_server(start):
    """Inputs wait 3 s for a batch to fill (8 inputs); the queue holds 4."""
    return start("--max-wait-ms", 3000, "--max-batch-size", 8, "--max-queue", 4, "--max-inputs", 4)


@pytest.fixture(scope="module")
def api(tiny_save_dir):
    from s2sft_fairseq import S2SFT
    torch.set_num_threads(1)
    return S2SFT.from_pretrained(tiny_save_dir[0])


def api_generate(api, text, beam=3, nbest=2, max_len=12):
    return api.generate(text, beam=beam, nbest=nbest, max_len_a=0, max_len_b=max_len)


def same(output, result):
    """A server output equals an API result: texts, tokens, scores."""
    assert output["text"] == result.text
    assert [(h["text"], h["tokens"]) for h in output["hypotheses"]] == [(h.text, h.tokens) for h in result.hypotheses]
    assert [h["score"] for h in output["hypotheses"]] == pytest.approx([h.score for h in result.hypotheses], abs=1e-4)


@pytest.fixture(scope="module")
def distinct_inputs(api, tiny_save_dir):
    """32 inputs whose one-at-a-time outputs are pairwise distinct, with those outputs (the oracle)."""
    data = tiny_save_dir[1]
    texts, oracle, seen = [], [], set()
    for text in toy_sources(data, "test") + toy_sources(data, "valid") + toy_sources(data, "train"):
        result = api_generate(api, text)
        if text not in texts and result.text not in seen:
            texts.append(text)
            oracle.append(result)
            seen.add(result.text)
        if len(texts) == 32:
            return texts, oracle
    raise AssertionError(f"only {len(texts)} inputs with distinct outputs")


# ---------------------------------------------------------------------------- round trip and batching
def test_round_trip_equals_the_python_api(server, distinct_inputs):
    texts, oracle = distinct_inputs
    status, _, answer = server.post({"inputs": texts[:3], **SETTINGS})
    assert status == 200, answer
    assert len(answer["outputs"]) == 3 and answer["time_ms"] > 0
    for output, result in zip(answer["outputs"], oracle):
        same(output, result)
        assert len(output["hypotheses"]) == 2 and not output["truncated"]


def test_32_concurrent_clients_each_get_their_own_outputs(server, distinct_inputs, api):
    """No cross-talk: 32 clients at once, each with its own input (half of them with other
    settings, which must not share their batches), each gets what the API gives for it alone;
    and batches of more than one input did form."""
    texts, oracle = distinct_inputs
    other = {i: api_generate(api, texts[i], beam=2, nbest=1, max_len=8) for i in range(0, 32, 2)}
    before = server.health()
    answers, barrier = [None] * 32, threading.Barrier(32)

    def client(i):
        body = {"inputs": [texts[i]], "beam": 2, "nbest": 1, "max_len": 8} if i in other else \
            {"inputs": [texts[i]], **SETTINGS}
        barrier.wait()
        answers[i] = server.post(body)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for i, (status, _, answer) in enumerate(answers):
        assert status == 200, (i, answer)
        same(answer["outputs"][0], other.get(i, oracle[i]))
    assert len({a[2]["outputs"][0]["text"] for a in answers}) == 32
    after = server.health()
    assert after["decoded_inputs"] - before["decoded_inputs"] == 32
    assert after["batches"] - before["batches"] < 32, "every input was decoded alone: no dynamic batching"
    assert after["largest_batch"] > 1


def test_one_request_with_many_inputs_keeps_input_order(server, distinct_inputs):
    texts, oracle = distinct_inputs
    status, _, answer = server.post({"inputs": texts, **SETTINGS})
    assert status == 200, answer
    for output, result in zip(answer["outputs"], oracle):
        same(output, result)


def test_long_input_is_truncated_and_says_so(server, api, distinct_inputs):
    text = " ".join([distinct_inputs[0][0]] * 20)
    status, _, answer = server.post({"inputs": [text], **SETTINGS})
    assert status == 200, answer
    assert answer["outputs"][0]["truncated"] and answer["outputs"][0]["source_tokens"] > 30
    same(answer["outputs"][0], api_generate(api, text))


# ---------------------------------------------------------------------------- limits, queue, disconnects
def test_full_queue_answers_503_with_retry_after(slow_server, distinct_inputs):
    texts, oracle = distinct_inputs
    first = {}
    t = threading.Thread(target=lambda: first.update(answer=slow_server.post({"inputs": texts[:4], **SETTINGS})))
    t.start()
    slow_server.wait_for(lambda h: h["waiting_inputs"] == 4, "4 waiting inputs")
    status, headers, answer = slow_server.post({"inputs": texts[4:5], **SETTINGS})
    assert status == 503, answer
    assert int(headers["retry-after"]) >= 1 and "--max-queue" in answer["error"]
    t.join(120)
    status, _, answer = first["answer"]
    assert status == 200, answer
    for output, result in zip(answer["outputs"], oracle):
        same(output, result)
    assert slow_server.health()["refused_queue_full"] >= 1


def test_disconnected_client_work_is_dropped(slow_server, distinct_inputs):
    texts, _ = distinct_inputs
    before = slow_server.wait_for(lambda h: h["waiting_inputs"] == 0 and h["running_inputs"] == 0, "an idle server")
    body = json.dumps({"inputs": texts[5:8], **SETTINGS}).encode()
    sock = socket.create_connection(("127.0.0.1", slow_server.port))
    sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    slow_server.wait_for(lambda h: h["waiting_inputs"] == 3, "the request's 3 inputs waiting")
    sock.close()
    after = slow_server.wait_for(lambda h: h["dropped_inputs"] == before["dropped_inputs"] + 3, "3 dropped inputs")
    assert after["waiting_inputs"] == 0
    time.sleep(3.5)  # past the batch window: nothing of it was decoded
    assert slow_server.health()["decoded_inputs"] == before["decoded_inputs"]
    assert slow_server.post({"inputs": texts[:1], **SETTINGS})[0] == 200


def test_request_timeout_answers_504_and_drops_the_work(start, distinct_inputs):
    server = start("--max-wait-ms", 3000, "--request-timeout", 0.5)
    t0 = time.monotonic()
    status, _, answer = server.post({"inputs": distinct_inputs[0][:2], **SETTINGS})
    assert status == 504 and "--request-timeout" in answer["error"], answer
    assert time.monotonic() - t0 < 2.5
    health = server.health()
    assert health["dropped_inputs"] == 2 and health["decoded_inputs"] == 0


BAD_INPUTS = {
    "malformed JSON": (b'{"inputs": ["a text"', 400, "malformed JSON: "),
    "empty body": (b"", 400, "empty request body"),
    "not an object": (b'["a text"]', 422, "expected an object"),
    "inputs not a list": ({"inputs": "a text"}, 422, "inputs: "),
    "input not a string": ({"inputs": ["ok", 7]}, 422, "inputs[1]: "),
    "beam as a string": ({"inputs": ["ok"], "beam": "5"}, 422, "beam: "),
    "missing inputs": ({"beam": 5}, 422, "inputs: missing"),
    "empty list": ({"inputs": []}, 422, "inputs: "),
    "empty string": ({"inputs": ["ok", ""]}, 422, "inputs[1]: empty after cleaning"),
    "white space only": ({"inputs": [" \t\u2028"]}, 422, "inputs[0]: empty after cleaning"),
    "1 MB string": ({"inputs": ["x" * 1_000_000]}, 422, "inputs[0]: 1000000 characters, at most 4000"),
    "invalid UTF-8": (b'{"inputs": ["caf\xe9"]}', 400, "not valid UTF-8: byte 16"),
    "unknown field": ({"inputs": ["ok"], "colour": "red"}, 422, "colour: unknown field"),
    "beam 0": ({"inputs": ["ok"], "beam": 0}, 422, "beam: "),
    "beam 10,000": ({"inputs": ["ok"], "beam": 10000}, 422, "beam: 10000, at most 16"),
    "nbest above beam": ({"inputs": ["ok"], "beam": 2, "nbest": 3}, 422, "nbest: 3 > beam 2"),
    "max_len above the model's": ({"inputs": ["ok"], "max_len": 5000}, 422, "max_len: 5000, at most the model's 16"),
    "too many inputs": ({"inputs": ["ok"] * 65}, 422, "65 texts, at most 64"),
    "seed not an integer": ({"inputs": ["ok"], "seed": 1.5}, 422, "seed: "),
    "negative temperature": ({"inputs": ["ok"], "sampling": True, "temperature": -1}, 422, "temperature: "),
    "NaN length penalty": (b'{"inputs": ["ok"], "lenpen": NaN}', 422, "lenpen: "),
    "seed out of range": ({"inputs": ["ok"], "seed": 2**40}, 422, "seed: "),
    "top-k beyond the vocabulary": ({"inputs": ["ok"], "sampling": True, "sampling_topk": 10**9}, 422,
                                    "sampling_topk: 1000000000, more than the model's"),
    "JSON nested too deeply": (b'{"inputs": ' + b"[" * 100000 + b"]" * 100000 + b"}", 400, "nested too deeply"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_a_clear_status_and_the_server_keeps_serving(server, distinct_inputs, case):
    body, want_status, want_message = BAD_INPUTS[case]
    status, _, answer = server.post(body)
    assert status == want_status, answer
    assert want_message in answer["error"], answer
    assert server.proc.poll() is None
    texts, oracle = distinct_inputs
    status, _, answer = server.post({"inputs": texts[:1], **SETTINGS})
    assert status == 200
    same(answer["outputs"][0], oracle[0])


def test_body_over_the_limit_is_refused_before_it_is_read(server):
    """413 on the declared length: the server answers after 64 KB of a 2 MB body."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 2000000\r\n\r\n" + b'{"inputs": ["' + b"x" * 65536)
    reply = b""
    while b"}" not in reply:  # the JSON error body may come in a second packet
        chunk = sock.recv(65536)
        if not chunk:
            break
        reply += chunk
    reply = reply.decode("utf-8", "replace")
    sock.close()
    assert reply.startswith("HTTP/1.1 413"), reply
    assert "larger than 1048576 bytes" in reply
    assert server.health()["status"] == "ok"


# ---------------------------------------------------------------------------- shutdown, CLI
def test_sigterm_drains_requests_in_flight_then_exits(start, distinct_inputs):
    texts, oracle = distinct_inputs
    server = start("--max-wait-ms", 1500)
    answer = {}
    t = threading.Thread(target=lambda: answer.update(reply=server.post({"inputs": texts[:2], **SETTINGS})))
    t.start()
    server.wait_for(lambda h: h["waiting_inputs"] == 2, "the request waiting")
    server.proc.send_signal(signal.SIGTERM)
    t.join(120)
    status, _, payload = answer["reply"]
    assert status == 200, payload
    for output, result in zip(payload["outputs"], oracle):
        same(output, result)
    # uvicorn re-raises the signal once drained, so the exit status says what stopped the server
    assert server.proc.wait(60) == -signal.SIGTERM, server.log()
    assert "Finished server process" in server.log()
    with pytest.raises(OSError):
        call(server.port, "GET", "/health", timeout=5)


def test_cli_defaults_to_loopback_and_refuses_a_missing_checkpoint(tmp_path):
    from s2sft_fairseq.serving.cli import get_parser
    assert get_parser().parse_args(["x.pt"]).host == "127.0.0.1"
    proc = subprocess.run([os.path.join(BIN, "s2sft-serve"), str(tmp_path / "missing.pt")], capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert proc.returncode == 1
    assert f"s2sft-serve: error: {tmp_path / 'missing.pt'}: no such checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- the demo page, in a browser
def _browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed (tests/setup_env.sh installs them; "
                    "apt failed or is not available here)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)


def test_demo_page_generates_in_a_real_browser(server, api, distinct_inputs):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    texts, _ = distinct_inputs
    max_target = server.health()["max_target_positions"]
    expected = [api_generate(api, t, beam=3, nbest=1, max_len=max_target).text for t in texts[:2]]
    browser = _browser()
    try:
        browser.get(f"http://127.0.0.1:{server.port}/")
        browser.find_element(By.ID, "inputs").send_keys("\n".join(texts[:2]))
        beam = browser.find_element(By.ID, "beam")
        beam.clear()
        beam.send_keys("3")
        browser.find_element(By.ID, "generate").click()
        WebDriverWait(browser, 60).until(ec.text_to_be_present_in_element((By.ID, "time"), " ms"))
        assert browser.find_element(By.ID, "error").text == ""
        assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "td.output")] == expected
        assert "2 input(s) in" in browser.find_element(By.ID, "time").text
        # an error from the server is shown, not swallowed
        browser.find_element(By.ID, "inputs").clear()
        browser.find_element(By.ID, "inputs").send_keys("ok")
        beam.clear()
        beam.send_keys("0")
        browser.find_element(By.ID, "generate").click()
        WebDriverWait(browser, 60).until(ec.text_to_be_present_in_element((By.ID, "error"), "422"))
        assert "beam" in browser.find_element(By.ID, "error").text
    finally:
        browser.quit()


# ---------------------------------------------------------------------------- batch forming (no HTTP)
def test_batches_respect_size_token_and_settings_bounds():
    """The batcher on a recording model: every batch holds one decoding setting, at most
    --max-batch-size inputs and --max-batch-tokens (inputs x longest); inputs keep arrival order
    within a setting; every job gets exactly its own results."""
    import asyncio
    import random
    from s2sft_fairseq.serving.batcher import DynamicBatcher
    from s2sft_fairseq.serving.limits import ServeLimits

    class Recorder:
        def __init__(self):
            self.batches = []

        def generate(self, texts, **options):
            self.batches.append((list(texts), options))
            return [f"{options['beam']}:{t}" for t in texts]

    limits = ServeLimits(max_batch_size=5, max_batch_tokens=60, max_wait_ms=20, max_queue=1000)
    rng = random.Random(0)
    model = Recorder()
    lengths = {}

    async def scenario():
        batcher = DynamicBatcher(model, limits)
        batcher.start()
        jobs = []
        for j in range(40):
            beam = rng.choice((2, 3))
            texts = [f"job{j}-input{i}" for i in range(rng.randint(1, 4))]
            counts = [rng.randint(3, 30) for _ in texts]
            lengths.update(zip(texts, counts))
            jobs.append(batcher.submit(texts, counts, {"beam": beam}, ("beam", beam)))
            if rng.random() < 0.3:
                await asyncio.sleep(0.005)
        results = await asyncio.gather(*(job.future for job in jobs))
        await batcher.stop()
        return jobs, results

    jobs, results = asyncio.run(scenario())
    for job, result in zip(jobs, results):
        assert result == [f"{job.options['beam']}:{t}" for t in job.texts]
    assert sum(len(texts) for texts, _ in model.batches) == sum(len(job.texts) for job in jobs)
    assert any(len(texts) > 1 for texts, _ in model.batches)
    order = {t: k for k, t in enumerate(t for job in jobs for t in job.texts)}
    beam_of = {t: job.options["beam"] for job in jobs for t in job.texts}
    for texts, options in model.batches:
        assert len(texts) <= 5 and len(texts) * max(lengths[t] for t in texts) <= 60
        assert all(t.startswith("job") for t in texts) and options["batch_size"] == len(texts)
        assert [order[t] for t in texts] == sorted(order[t] for t in texts)
        assert {beam_of[t] for t in texts} == {options["beam"]}, "inputs of other settings shared a batch"
