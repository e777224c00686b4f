"""fluxgate.flowcontrol against a real agent that requires client
certificates (tls.client_ca_file): checks, flow ends and spans over
https with an ssl.SSLContext; refused without the client's certificate."""

import shutil
import ssl
import subprocess
import time
import urllib.request

import pytest

from conftest import POLICIES, _missing, free_port

from fluxgate.flowcontrol import Client, SpanExporter
from fluxgate.flowcontrol.spans import Flow


def _openssl(*args: str, cwd) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A throw-away CA, a server certificate for 127.0.0.1 and a client
    certificate, made with the openssl command."""
    if shutil.which("openssl") is None:
        _missing("the openssl command is needed to make test certificates (Debian package openssl)")
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
             "-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "1", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)
    return d


@pytest.fixture(scope="module")
def tls_agent(fluxgate_bin, pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("tlsagent")
    (d / "policies").mkdir()
    for name, text in POLICIES.items():
        (d / "policies" / name).write_text(text)
    hp, op = free_port(), free_port()
    (d / "fluxgate.yaml").write_text(
        f"server: {{host: 127.0.0.1, http_port: {hp}, grpc_port: 0}}\n"
        "metrics: {enabled: false}\n"
        f"otlp: {{grpc_port: 0, http_port: {op}}}\n"
        f"policies: {{dir: {str(d / 'policies')!r}}}\n"
        f"tls: {{cert_file: {str(pki / 'server.crt')!r}, key_file: {str(pki / 'server.key')!r}, client_ca_file: {str(pki / 'ca.crt')!r}}}\n"
        "log: {level: warn}\n"
    )
    log = open(d / "agent.log", "wb")
    proc = subprocess.Popen([fluxgate_bin, "agent", "--config", str(d / "fluxgate.yaml")], stdout=log, stderr=subprocess.STDOUT)
    ctx = client_context(pki)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"fluxgate agent exited {proc.returncode}:\n{(d / 'agent.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{hp}/readyz", timeout=1, context=ctx) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"TLS agent not ready in 30 s:\n{(d / 'agent.log').read_text()[-3000:]}")
        time.sleep(0.05)
    yield f"https://127.0.0.1:{hp}", f"https://127.0.0.1:{op}/v1/traces"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def client_context(pki, with_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    return ctx


def test_checks_and_flow_ends_over_mutual_tls(tls_agent, pki):
    api, _ = tls_agent
    c = Client(api, timeout=2, ssl_context=client_context(pki))
    ds = [c.check("sdk-check", labels={"user": "tls-user"}) for _ in range(5)]
    assert [d.accepted for d in ds] == [True, True, True, False, False], [d.error for d in ds]
    assert all(d.error is None for d in ds)
    held = c.check("sdk-slot")
    assert held.accepted and held.flow_id
    assert not c.check("sdk-slot").accepted  # the only slot is held
    c.end(held)
    assert c.check("sdk-slot").accepted


def test_refused_without_the_client_certificate(tls_agent, pki):
    api, _ = tls_agent
    d = Client(api, timeout=2, ssl_context=client_context(pki, with_cert=False)).check("sdk-check", labels={"user": "x"})
    assert d.accepted and d.reason == "failed_open" and d.error, "the agent must refuse a client without a certificate"
    with pytest.raises(ValueError, match="https"):
        Client("http://127.0.0.1:1", ssl_context=client_context(pki))


def test_spans_over_mutual_tls(tls_agent, pki):
    _, traces = tls_agent
    exp = SpanExporter(traces, ssl_context=client_context(pki), interval=60)
    exp.record(Flow(control_point="sdk-meter", flux_meters=["sdk-latency"], accepted=True, status_code=200, start=time.time() - 0.01, end=time.time()))
    exp.flush()
    assert exp.sent == 1, f"dropped {exp.dropped}"
    exp.close()
