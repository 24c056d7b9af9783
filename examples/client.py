#!/usr/bin/env python3
"""A host in another language: captures through `capture serve` with Python's standard library only.

Starts the Optty emulator (`capture sandbox`) and `capture serve` on loopback, captures an order,
retries the same call (the idempotency key makes it safe: the ledger replays it, nothing is sent
again), reads the recorded capture back by its key and the Prometheus metrics, then stops the
server with SIGTERM (it finishes what is in flight and exits 0).

    cargo build --workspace && python3 examples/client.py

Exits non-zero if anything is not as expected (CI runs it).
"""

import json
import os
import pathlib
import secrets
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

REPO = pathlib.Path(__file__).resolve().parent.parent
BIN = REPO / "target" / "debug"
CAPTURE = str(BIN / "capture")


def start(args, env, prefix):
    """Starts a process and waits for its line that starts with `prefix`; returns (process, the
    first word after it). A process that says `ready` (or exits) without that line is an error,
    never a wait forever."""
    p = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith(prefix):
            return p, line[len(prefix):].split()[0]
        if line.startswith("ready"):
            p.kill()
            sys.exit(f"{args[1]} said `ready` without a line starting with `{prefix}`")
    sys.exit(f"{args[1]} exited before saying `{prefix}`")


def call(base, token, method, path, body=None):
    """One API call: (HTTP status, parsed JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:  # 4xx and 5xx carry a body too
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def expect(ok, what):
    if not ok:
        sys.exit(f"unexpected: {what}")


def main():
    token = secrets.token_hex(16)
    env = dict(os.environ, CAPTURE_SERVE_TOKEN=token, OPTTY_TOKEN="sandbox-optty-token")
    # `capture sandbox` prints one line per emulator: `optty        http://127.0.0.1:PORT  token ...`.
    sandbox, optty_url = start([CAPTURE, "sandbox", "--platform", "optty", "--port", "0"], env, "optty ")
    with tempfile.TemporaryDirectory(prefix="capture-client-") as tmp:
        config = pathlib.Path(tmp) / "capture.toml"
        config.write_text(
            f'rules = "{REPO / "rules" / "demo"}"\n'
            f'plugins = ["{BIN / "libcapture_plugin_optty.so"}"]\n'
            "# the ledger: capture.db beside this file (the default)\n\n"
            "[platforms.optty]\n"
            f'base_url = "{optty_url}"\n'
            'credentials = { bearer_token = { env = "OPTTY_TOKEN" } }\n'
        )
        server, base = start(
            [CAPTURE, "serve", "--config", str(config), "--listen", "127.0.0.1:0"],
            env,
            "capture serve listening on ",
        )
        try:
            request = json.loads((REPO / "examples" / "requests" / "full-capture.json").read_text())
            status, report = call(base, token, "POST", "/v1/captures", request)
            print(f"POST /v1/captures -> {status} {report['outcome']['status']} {report['outcome'].get('amount')}")
            expect(status == 200 and report["outcome"]["status"] == "captured", report)

            # The answer was lost, say: the same call again is safe.
            status, again = call(base, token, "POST", "/v1/captures", request)
            print(f"POST /v1/captures (retried) -> {status}, {len(again['exchanges'])} HTTP exchange(s)")
            expect(status == 200 and again["exchanges"] == [], again)

            key = request["idempotency_key"]
            status, recorded = call(base, token, "GET", f"/v1/captures/optty/{key}")
            print(f"GET /v1/captures/optty/{key} -> {status} {recorded['state']}")
            expect(status == 200 and recorded["state"] == "captured", recorded)

            held = json.loads((REPO / "examples" / "requests" / "held-large-order.json").read_text())
            status, report = call(base, token, "POST", "/v1/captures", held)
            print(f"POST /v1/captures (large order) -> {status} {report['outcome']['status']}")
            expect(status == 423 and report["outcome"]["status"] == "held", report)

            status, metrics = call(base, token, "GET", "/metrics")
            captured = [l for l in metrics.splitlines() if l.startswith("capture_captures_total{")]
            print("GET /metrics ->", "; ".join(captured))
            expect('capture_captures_total{platform="optty",outcome="captured"} 2' in metrics, metrics)
        finally:
            server.send_signal(signal.SIGTERM)
            code = server.wait(timeout=60)
            sandbox.send_signal(signal.SIGINT)
            sandbox.wait(timeout=60)
        print(f"capture serve stopped on SIGTERM with exit code {code}")
        expect(code == 0, f"exit code {code}")


if __name__ == "__main__":
    main()
