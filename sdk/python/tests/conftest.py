"""Shared fixtures. Under CI=true a missing optional dependency fails the
test that needs it instead of skipping it."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """Import module, or skip (fail under CI=true) with the Debian package to install."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        msg = f"{module} is missing ({e}); `make deps` installs python3-{module.split('.')[0].replace('_', '-')}"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- the real agent ---------------------------------------------------------

import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[3]

POLICIES = {
    # One user gets 3 checks: bucket of 3, refilled 3 per 60 s.
    "ratelimit.yaml": """apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sdk-per-user, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: sdk-check}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 3}}
              fill_amount: {constant_signal: {value: 3}}
            parameters: {limit_by_label_key: user, interval: 60s}
""",
    # The middleware's control point: the user comes from the X-User header
    # through a classifier, as in examples/nginx/policy.yaml.
    "asgi.yaml": """apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sdk-asgi-limit, namespace: default}
spec:
  resources:
    classifiers:
      - selectors: [{control_point: sdk-http}]
        rules:
          user: {extractor: {from: http.request.header.x_user}}
  circuit:
    components:
      - flow_control:
          rate_limiter:
            selectors: [{control_point: sdk-http}]
            in_ports:
              bucket_capacity: {constant_signal: {value: 2}}
              fill_amount: {constant_signal: {value: 2}}
            parameters: {limit_by_label_key: user, interval: 60s}
""",
    # One slot (controlpoint/server/flowend_test.go's oneSlot).
    "oneslot.yaml": """apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sdk-one-slot, namespace: default}
spec:
  circuit:
    components:
      - flow_control:
          adaptive_concurrency:
            selectors: [{control_point: sdk-slot}]
            parameters: {initial_concurrency: 1, max_concurrency: 1, max_queue_delay: 1ms}
""",
    "meter.yaml": """apiVersion: fluxgate.io/v1beta1
kind: Policy
metadata: {name: sdk-meter, namespace: default}
spec:
  resources:
    flux_meters:
      sdk-latency:
        selectors: [{control_point: sdk-meter}]
        static_buckets: {buckets: [5, 50, 500]}
""",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _missing(msg: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def fluxgate_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """FLUXGATE_BIN, or `go build ./cmd/fluxgate` from the repository root."""
    given = os.environ.get("FLUXGATE_BIN")
    if given:
        if not os.access(given, os.X_OK):
            pytest.fail(f"FLUXGATE_BIN={given} is not an executable")
        return given
    go = shutil.which("go") or ("/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None)
    if go is None or not (REPO / "cmd" / "fluxgate").is_dir():
        _missing("no fluxgate binary: set FLUXGATE_BIN or install Go (the test builds ./cmd/fluxgate)")
    out = tmp_path_factory.mktemp("bin") / "fluxgate"
    r = subprocess.run([go, "build", "-o", str(out), "./cmd/fluxgate"], cwd=REPO, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        pytest.fail(f"go build ./cmd/fluxgate failed:\n{r.stderr[-3000:]}")
    return str(out)


class Agent:
    def __init__(self, http: str, metrics: str, otlp: str, proc: subprocess.Popen) -> None:
        self.http, self.metrics, self.otlp, self.proc = http, metrics, otlp, proc

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics + "/metrics", timeout=5) as r:
            return r.read().decode()


@pytest.fixture(scope="session")
def agent(fluxgate_bin: str, tmp_path_factory: pytest.TempPathFactory):
    """A `fluxgate agent` on free 127.0.0.1 ports with POLICIES."""
    d = tmp_path_factory.mktemp("agent")
    (d / "policies").mkdir()
    for name, text in POLICIES.items():
        (d / "policies" / name).write_text(text)
    hp, mp, op = free_port(), free_port(), free_port()
    (d / "fluxgate.yaml").write_text(
        f"server: {{host: 127.0.0.1, http_port: {hp}, grpc_port: 0}}\n"
        f"metrics: {{port: {mp}}}\n"
        f"otlp: {{grpc_port: 0, http_port: {op}}}\n"
        f"policies: {{dir: {str(d / 'policies')!r}}}\n"
        "log: {level: warn}\n"
    )
    log = open(d / "agent.log", "wb")
    proc = subprocess.Popen([fluxgate_bin, "agent", "--config", str(d / "fluxgate.yaml")], stdout=log, stderr=subprocess.STDOUT)
    a = Agent(f"http://127.0.0.1:{hp}", f"http://127.0.0.1:{mp}", f"http://127.0.0.1:{op}", proc)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"fluxgate agent exited {proc.returncode}:\n{(d / 'agent.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(a.http + "/v1/monitoring/health", timeout=1) as r:
                if b"4 policies loaded" in r.read():
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"fluxgate agent not ready in 30 s:\n{(d / 'agent.log').read_text()[-3000:]}")
        time.sleep(0.05)
    yield a
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
