"""Re-measures the circuit-proxy column of docs/migrating-from-pybreaker.md, "What behaves differently".

Python `requests` as the client, a Python upstream on 127.0.0.1 (http.server), the real
circuit-proxy (bin/circuit-proxy.js) between them. Prints the table's rows as Markdown; the test
test/e2e/python-migration.test.ts checks that the docs hold exactly these rows.
Usage: python3 measure_differences.py   (from anywhere; loopback only; about 10 s)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NODE_FLAGS = ["--no-memory-reducer", "--max-semi-space-size=16", "--initial-old-space-size=64", "--disable-warning=DEP0060"]
# And the environment (src/runtime.ts, PROCESS_ENV).
PROCESS_ENV = {"MALLOC_TRIM_THRESHOLD_": "67108864"}


class Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        path = self.path.split("?")[0].rsplit("/", 1)[-1]
        if path == "500":
            return self._send(500, b'{"error": "boom"}')
        if path == "hang":
            time.sleep(3)
            return self._send(200, b"late")
        if path == "stall":
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.end_headers()
            self.wfile.write(b"12345")
            self.wfile.flush()
            time.sleep(2.5)
            self.wfile.write(b"67890")
            return None
        if path == "reset":  # gone without an answer, as a crashing upstream
            self.close_connection = True
            self.connection.shutdown(2)
            return None
        if path == "slow":
            time.sleep(0.5)
        if path == "trial":
            time.sleep(0.2)
        return self._send(200, b"ok")

    def _send(self, status: int, body: bytes):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # the proxy gave up on a hanging call: expected
        pass


def start_proxy(upstream: str, config_path: str):
    services = {
        "down": "url: http://127.0.0.1:1",
        "status": f"url: {upstream}",
        "hang": f"url: {upstream}\n    timeout: 1s",
        "stall": f"url: {upstream}",
        "sequence": f"url: {upstream}\n    threshold: 10",
        "halfopen": f"url: {upstream}\n    threshold: 1\n    cooldown: 300ms",
        "queued": f"url: {upstream}\n    threshold: 1\n    cooldown: 300ms\n    halfOpen: {{ queue: 9, maxWait: 2s }}",
        "slow": f"url: {upstream}",
    }
    with open(config_path, "w") as f:
        f.write("listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\ndefaults: { threshold: 3, cooldown: 1s }\nservices:\n")
        for name, body in services.items():
            f.write(f"  {name}:\n    {body}\n")
    proc = subprocess.Popen(
        ["node", *NODE_FLAGS, os.path.join(ROOT, "bin", "circuit-proxy.js"), "serve", "--config", config_path],
        stdout=subprocess.PIPE,
        env={**os.environ, **PROCESS_ENV},
        text=True,
    )
    proc_env = None
    for line in proc.stdout:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if str(entry.get("msg", "")).startswith("circuit-proxy listening"):
            proc_env = (entry["port"], entry["adminPort"])
            break
    if proc_env is None:
        raise SystemExit("circuit-proxy did not start")
    # Keep reading its log lines, so a full pipe never blocks it.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, proc_env


def main() -> int:
    up = QuietServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=up.serve_forever, daemon=True).start()
    config = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"circuit-proxy-migration-{os.getpid()}.yaml")
    proxy, (port, admin) = start_proxy(f"http://127.0.0.1:{up.server_address[1]}", config)
    base = f"http://127.0.0.1:{port}/svc"
    get = lambda path, **kw: requests.get(f"{base}/{path}", timeout=10, **kw)  # noqa: E731
    rows = []
    try:
        codes = []
        for _ in range(4):
            r = get("down/x")
            codes.append(f"{r.status_code}" + (" + Retry-After" if r.status_code == 503 and "retry-after" in r.headers else ""))
        rows.append(("upstream down, calls 1-4", ", ".join(codes)))

        codes = [str(get("status/500").status_code) for _ in range(4)]
        rows.append(("upstream answers 500, calls 1-4", ", ".join(codes) + " (a failure; trips after 3)"))

        r = get("hang/hang")
        rows.append(("upstream hangs (timeout 1s)", f"{r.status_code} {r.json()['detail']}"))

        r = get("stall/stall")
        rows.append(("body stalls 2.5 s", f"{r.status_code}, all {len(r.content)} bytes (body idle limit 30s)"))

        for path in ("reset", "reset", "500", "reset", "reset"):
            get(f"sequence/{path}")
        seq = requests.get(f"http://127.0.0.1:{admin}/breakers/sequence", timeout=5).json()["consecutiveFailures"]
        rows.append(("fail, fail, 500, fail, fail (threshold 10)", f"count {seq}"))

        for name, label in (("halfopen", "10 callers at half-open, upstream healthy"), ("queued", "the same with halfOpen: { queue: 9 }")):
            get(f"{name}/500")
            time.sleep(0.45)
            with ThreadPoolExecutor(10) as pool:
                statuses = sorted(pool.map(lambda _: get(f"{name}/trial").status_code, range(10)))
            summary = ", ".join(f"{statuses.count(s)} x {s}" for s in sorted(set(statuses)))
            rows.append((label, summary))

        with ThreadPoolExecutor(5) as pool:
            def timed(_):
                t = time.monotonic()
                get("slow/slow")
                return time.monotonic() - t
            durations = sorted(pool.map(timed, range(5)))
        parallel = "all under 1 s: in parallel" if durations[-1] < 1.0 else f"{durations[0]:.1f}-{durations[-1]:.1f} s"
        rows.append(("5 callers at once, closed, 500 ms upstream", parallel))

        r = get("down/x")
        rows.append(("error body", f"{r.headers['content-type']} {{{', '.join(sorted(r.json().keys()))}}}"))
    finally:
        proxy.terminate()
        proxy.wait(10)
        up.shutdown()
        os.remove(config)

    print("| case | circuit-proxy (measured) |")
    print("| --- | --- |")
    for case, value in rows:
        print(f"| {case} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
