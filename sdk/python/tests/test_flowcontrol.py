"""fluxgate.flowcontrol against the real agent binary, and offline."""


import re
import time
import wsgiref.util

import pytest

from conftest import free_port, require

from fluxgate.flowcontrol import (
    Client,
    Decision,
    FlowControlMiddleware,
    FlowControlWSGIMiddleware,
    SpanExporter,
    environ_labels,
    scope_labels,
)


def test_exactly_three_of_five_accepted(agent):
    c = Client(agent.http, timeout=2)
    ds = [c.check("sdk-check", labels={"user": "alice"}) for _ in range(5)]
    assert [d.accepted for d in ds] == [True, True, True, False, False]
    rej = ds[3]
    assert rej.reason == "rate_limited" and rej.status_code == 429
    assert rej.policy == "default/sdk-per-user" and rej.component == "0"
    assert rej.retry_after is not None and 0 < rej.retry_after <= 20
    h = dict(rej.headers())
    assert h["X-FluxGate-Decision"] == "rejected" and h["X-FluxGate-Reason"] == "rate_limited"
    assert h["X-FluxGate-Policy"] == "default/sdk-per-user" and int(h["Retry-After"]) >= 1
    assert h["RateLimit-Limit"] == "3" and h["RateLimit-Remaining"] == "0"
    assert dict(ds[0].headers())["RateLimit-Remaining"] == "2"
    # Another user has their own bucket.
    assert c.check("sdk-check", labels={"user": "bob"}).accepted


def test_flow_end_frees_the_only_slot(agent):
    c = Client(agent.http, timeout=2)
    for _ in range(3):
        first = c.check("sdk-slot")
        assert first.accepted and first.flow_id
        busy = c.check("sdk-slot")
        assert not busy.accepted and busy.reason != "failed_closed", "a second flow got the only slot while it was held"
        assert c.end(first) is True
    assert c.end(first) is False, "the flow was ended already"
    assert c.end(Decision(accepted=True, reason="none")) is False


async def test_async_check_and_end(agent):
    c = Client(agent.http, timeout=2)
    d = await c.acheck("sdk-slot")
    assert d.accepted and d.flow_id
    assert not (await c.acheck("sdk-slot")).accepted
    assert await c.aend(d, failed=True) is True
    again = await c.acheck("sdk-slot")
    assert again.accepted and await c.aend(again) is True


def test_fail_open_and_closed_when_the_agent_is_down():
    down = f"http://127.0.0.1:{free_port()}"
    d = Client(down, timeout=0.5).check("ingress", labels={"user": "a"})
    assert d.accepted and d.reason == "failed_open" and d.failed_open and "Connection" in (d.error or "")
    assert Client(down, timeout=0.5).end(d) is False
    closed = Client(down, timeout=0.5, failure_mode="fail_closed").check("ingress")
    assert not closed.accepted and closed.reason == "failed_closed" and closed.status_code == 503
    assert dict(closed.headers())["X-FluxGate-Reason"] == "failed_closed"


def test_deadline_fails_open_against_a_silent_agent():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)  # accepts connections, never answers
        t0 = time.monotonic()
        d = Client(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=0.2).check("ingress")
        took = time.monotonic() - t0
    assert d.reason == "failed_open" and "timed out" in (d.error or "")
    assert took < 2.0


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        Client("localhost:8080")
    with pytest.raises(ValueError):
        Client(failure_mode="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Client().check("")


def test_labels_of_asgi_and_wsgi_requests():
    scope = {
        "type": "http", "method": "POST", "scheme": "https", "path": "/a b", "raw_path": b"/a%20b",
        "query_string": b"x=1", "client": ("10.0.0.7", 5555), "server": ("svc", 443),
        "headers": [(b"host", b"svc.example"), (b"x-user", b"alice"), (b"x-user", b"bob"),
                    (b"baggage", b"tier=free,user=mallory")],
    }
    labels = scope_labels(scope)
    assert labels == {
        "http.method": "POST", "http.target": "/a%20b?x=1", "http.host": "svc.example", "http.scheme": "https",
        "http.request.header.host": "svc.example", "http.request.header.x_user": "alice,bob",
        "http.request.header.baggage": "tier=free,user=mallory", "tier": "free", "user": "mallory",
        "source.address": "10.0.0.7",
    }
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/p", "QUERY_STRING": "q=2", "HTTP_X_USER": "alice",
               "HTTP_HOST": "h:8", "REMOTE_ADDR": "127.0.0.1"}
    wsgiref.util.setup_testing_defaults(environ)
    wl = environ_labels(environ)
    assert wl["http.target"] == "/p?q=2" and wl["http.request.header.x_user"] == "alice"
    assert wl["http.method"] == "GET" and wl["http.host"] == "h:8" and wl["source.address"] == "127.0.0.1"


def test_asgi_middleware_answers_429_with_retry_after(agent):
    require("fastapi")
    require("httpx")
    from fastapi import FastAPI, Request
    from fastapi.testclient import TestClient

    app = FastAPI()
    app.add_middleware(FlowControlMiddleware, client=Client(agent.http, timeout=2), control_point="sdk-http")

    @app.get("/hello")
    async def hello(request: Request):
        return {"reason": request.scope["fluxgate.decision"].reason}

    tc = TestClient(app)
    got = [tc.get("/hello", headers={"X-User": "carol"}) for _ in range(3)]
    assert [r.status_code for r in got] == [200, 200, 429]
    assert got[0].json() == {"reason": "none"} and got[0].headers["x-fluxgate-decision"] == "accepted"
    r = got[2]
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-fluxgate-decision"] == "rejected" and r.headers["x-fluxgate-reason"] == "rate_limited"
    assert r.headers["x-fluxgate-policy"] == "default/sdk-asgi-limit" and r.headers["x-fluxgate-component"] == "0"
    assert r.headers["ratelimit-limit"] == "2" and r.headers["ratelimit-remaining"] == "0"
    body = r.json()
    assert body["error"] == "rate_limited" and body["policy"] == "default/sdk-asgi-limit" and body["retry_after_seconds"] >= 1
    assert tc.get("/hello", headers={"X-User": "dave"}).status_code == 200


def test_asgi_middleware_ends_flows_and_counts_5xx(agent):
    require("starlette")
    require("httpx")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    client = Client(agent.http, timeout=2)

    async def ok(request):
        # While this request holds the only slot, another check is refused.
        assert not client.check("sdk-slot").accepted
        return PlainTextResponse("ok")

    async def boom(request):
        return PlainTextResponse("no", status_code=500)

    app = Starlette(routes=[Route("/ok", ok), Route("/boom", boom)])
    app.add_middleware(FlowControlMiddleware, client=client, control_point="sdk-slot")
    tc = TestClient(app)
    for path, status in [("/ok", 200), ("/boom", 500), ("/ok", 200)]:
        assert tc.get(path).status_code == status  # each request's end frees the slot for the next
    d = client.check("sdk-slot")
    assert d.accepted and client.end(d)


def test_wsgi_middleware(agent):
    from wsgiref.util import setup_testing_defaults

    client = Client(agent.http, timeout=2)

    def app(environ, start_response):
        assert not client.check("sdk-slot").accepted, "the slot is held while the app runs"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    mw = FlowControlWSGIMiddleware(app, client=client, control_point="sdk-slot")
    for _ in range(2):
        env: dict = {}
        setup_testing_defaults(env)
        seen = {}
        it = mw(env, lambda status, headers, exc_info=None: seen.update(status=status, headers=dict(headers)))
        assert b"".join(it) == b"ok"
        it.close()
        assert seen["status"] == "200 OK" and seen["headers"]["X-FluxGate-Decision"] == "accepted"
    # Rate limited through WSGI: 429 and Retry-After.
    mw2 = FlowControlWSGIMiddleware(lambda e, s: (s("200 OK", []), [b""])[1], client=client, control_point="sdk-http")
    statuses = []
    for _ in range(3):
        env = {"HTTP_X_USER": "erin"}
        setup_testing_defaults(env)
        seen = {}
        b"".join(mw2(env, lambda status, headers, exc_info=None: seen.update(status=status, headers=dict(headers))))
        statuses.append(seen["status"])
    assert statuses == ["200 OK", "200 OK", "429 Too Many Requests"]
    assert int(seen["headers"]["Retry-After"]) >= 1


def test_spans_reach_a_flux_meter_histogram(agent):
    require("httpx")
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    spans = SpanExporter(agent.otlp + "/v1/traces", interval=0.05)

    async def work(request):
        return PlainTextResponse("done")

    app = Starlette(routes=[Route("/work", work)])
    app.add_middleware(FlowControlMiddleware, client=Client(agent.http, timeout=2), control_point="sdk-meter", spans=spans)
    tc = TestClient(app)
    for _ in range(4):
        assert tc.get("/work").status_code == 200
    spans.flush()
    assert spans.sent == 4 and spans.dropped == 0
    pat = re.compile(r'^flux_meter_count\{[^}]*flux_meter_name="sdk-latency"[^}]*http_status_code="200"[^}]*\} (\S+)$', re.M)
    deadline = time.monotonic() + 10
    while True:
        m = pat.search(agent.scrape())
        if m and float(m.group(1)) >= 4:
            break
        assert time.monotonic() < deadline, "the spans did not reach flux_meter_count{flux_meter_name=sdk-latency}"
        time.sleep(0.1)
    spans.close()
