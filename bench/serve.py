#!/usr/bin/env python
"""Load figures of ``s2sft-serve``: N concurrent clients against the server on 127.0.0.1.

Starts ``s2sft-serve`` on the given checkpoint twice: once as configured (dynamic batching), once
with ``--max-batch-size 1`` (every request decoded on its own: serving one request at a time,
whatever the concurrency). Each client is a thread with its own keep-alive connection sending
requests of one input each (the next test source not yet sent), beam 5, and timing each request.
For each (server, clients) cell: sentences/s over the cell's wall time, p50 / p95 request latency,
and sentences/s relative to the reference, one client against the no-batching server (one request
at a time). Cells are run in ``--rounds`` interleaved rounds; the best round's throughput and its
latencies are reported. Every answer is compared with the first answer seen for the same input in
any cell (batch composition may change float rounding, and with it rarely a beam-search
outcome): the last column counts the differences.

    .venv/bin/python bench/serve.py --checkpoint examples/work/quickstart/checkpoints/checkpoint_last.pt \\
        --sources examples/work/quickstart/raw/test.src
    .venv/bin/python bench/serve.py --smoke --checkpoint TINY/checkpoint_best.pt --sources TEXTS   # tests

Target (BENCHMARKS.md): at 16 clients, >= 3x the sentences/s of serving one request at a time.
"""
import argparse
import datetime
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine  # noqa: E402

BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, checkpoint, threads, extra, log_path):
        self.port = free_port()
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore")
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen([os.path.join(BIN, "s2sft-serve"), checkpoint, "--port", str(self.port),
                                      "--threads", str(threads), "--log-level", "warning", *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"s2sft-serve exited with {self.proc.returncode}; log: {log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.3)
        raise SystemExit(f"s2sft-serve did not start within 300 s; log: {log_path}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(120)
        self.log.close()


def run_cell(port, clients, texts, settings):
    """Send every text once, from ``clients`` concurrent clients; (wall seconds, latencies, answers)."""
    next_index, lock = [0], threading.Lock()
    latencies, answers, errors = [], [None] * len(texts), []
    barrier = threading.Barrier(clients + 1)

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        barrier.wait()
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= len(texts):
                break
            body = json.dumps({"inputs": [texts[i]], **settings})
            t0 = time.perf_counter()
            conn.request("POST", "/generate", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = json.loads(response.read())
            elapsed = time.perf_counter() - t0
            if response.status != 200:
                errors.append(f"input {i}: {response.status} {payload}")
                break
            with lock:
                latencies.append(elapsed)
            answers[i] = payload["outputs"][0]["text"]
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit("requests failed: " + "; ".join(errors[:5]))
    return wall, latencies, answers


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--sources", required=True, help="raw source texts, one per line (the test split)")
    ap.add_argument("--clients", default="1,4,16,64")
    ap.add_argument("--sentences", type=int, default=128, help="sentences sent per cell")
    ap.add_argument("--one-client-sentences", type=int, default=48, help="sentences per cell with one client")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--max-len", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    ap.add_argument("--server-args", default="", help="extra s2sft-serve flags for the batching server")
    ap.add_argument("--log-dir", default="/tmp/s2sft-bench-serve")
    ap.add_argument("--smoke", action="store_true", help="clients 1,4, 8 sentences, 1 round (tests)")
    args = ap.parse_args()
    if args.smoke:
        args.clients, args.sentences, args.one_client_sentences, args.rounds = "1,4", 8, 4, 1
        args.max_len = min(args.max_len, 12)
    clients = [int(c) for c in args.clients.split(",")]
    with open(args.sources, encoding="utf-8") as f:
        pool = [line.strip() for line in f if line.strip()]
    settings = {"beam": args.beam, "nbest": 1, "max_len": args.max_len, "no_repeat_ngram_size": 3}
    os.makedirs(args.log_dir, exist_ok=True)
    servers = {"batching": ["--max-batch-size", "32", *args.server_args.split()],
               "one at a time": ["--max-batch-size", "1"]}
    cells = [(name, n) for name in servers for n in clients]
    started = {name: Server(args.checkpoint, args.threads, extra, os.path.join(args.log_dir, f"{i}.log"))
               for i, (name, extra) in enumerate(servers.items())}
    best, reference_answers, differing = {}, {}, {}
    load_before = os.getloadavg()
    try:
        warm = pool[:4]
        for server in started.values():
            run_cell(server.port, 2, warm, settings)
        for rnd in range(args.rounds):
            for name, n in (cells if rnd % 2 == 0 else cells[::-1]):
                texts = pool[:args.one_client_sentences if n == 1 else args.sentences]
                wall, latencies, answers = run_cell(started[name].port, n, texts, settings)
                differ = sum(reference_answers.setdefault(text, answer) != answer for text, answer in zip(texts, answers))
                differing[(name, n)] = max(differing.get((name, n), 0), differ)
                rate = len(texts) / wall
                if rate > best.get((name, n), (0,))[0]:
                    best[(name, n)] = (rate, percentile(latencies, 0.5), percentile(latencies, 0.95), len(texts))
                print(f"round {rnd + 1}: {name}, {n} clients: {rate:.2f} sentences/s", flush=True)
    finally:
        for server in started.values():
            server.stop()
    reference = best[("one at a time", 1)][0]
    print(f"\n{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {machine()}; "
          f"load average before: {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    print(f"checkpoint {args.checkpoint}; beam {args.beam}, max_len {args.max_len}, one input per request; "
          f"server threads {args.threads}; best of {args.rounds} interleaved rounds\n")
    print("| server | clients | sentences | sentences/s | × one at a time | p50 latency s | p95 latency s | "
          "answers ≠ first seen |")
    print("|---|---|---|---|---|---|---|---|")
    for name, n in cells:
        rate, p50, p95, count = best[(name, n)]
        print(f"| {name} | {n} | {count} | {rate:.2f} | {rate / reference:.2f}× | {p50:.3f} | {p95:.3f} | "
              f"{differing[(name, n)]} |")


if __name__ == "__main__":
    main()
