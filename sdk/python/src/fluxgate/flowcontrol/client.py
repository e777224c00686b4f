"""Client of the agent's HTTP JSON check API."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import threading
import time
import urllib.parse
from typing import Any, Literal, Mapping

from fluxgate.flowcontrol.decision import Decision

__all__ = ["Client", "FailureMode", "DEFAULT_ADDRESS", "DEFAULT_TIMEOUT"]

log = logging.getLogger("fluxgate.flowcontrol")

FailureMode = Literal["fail_open", "fail_closed"]
DEFAULT_ADDRESS = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 0.1
_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)


class Client:
    """Asks a FluxGate agent whether to admit flows, over ``POST /v1/check``,
    and reports their ends over ``POST /v1/flow/end``.

    ``address``: the agent's HTTP API (default ``http://127.0.0.1:8080``).
    ``token``: the agent's ``check.token``, sent as ``Authorization: Bearer``.
    ``timeout``: seconds each check may take (default 0.1): it bounds the
    connection and every socket read of the call.
    ``failure_mode``: what a check decides when the agent does not answer
    in time, is unreachable or answers with an error: ``"fail_open"``
    (default) accepts with reason ``failed_open``, ``"fail_closed"``
    rejects with reason ``failed_closed`` and status 503. Either way
    ``Decision.error`` says what went wrong and a warning is logged at most
    every 10 s.
    ``ssl_context``: for an ``https://`` agent (``tls.*`` in its config),
    the context that trusts its certificate and, for mutual TLS, holds the
    client's (``ssl.create_default_context(cafile=...)`` then
    ``load_cert_chain(...)``); ``None`` uses the system's roots.
    ``end_timeout``: seconds a flow-end report may take (default 1.0); a
    report that fails is only lost: the agent frees the slot after the
    component's ``max_flow_duration``.

    Safe for use from many threads (one keep-alive connection per thread).
    ``acheck`` / ``aend`` run the same calls in a worker thread for asyncio.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        failure_mode: FailureMode = "fail_open",
        end_timeout: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        u = urllib.parse.urlsplit(address)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"flowcontrol: address must be http(s)://host:port, got {address!r}")
        if failure_mode not in ("fail_open", "fail_closed"):
            raise ValueError(f"flowcontrol: failure_mode must be 'fail_open' or 'fail_closed', got {failure_mode!r}")
        if not timeout > 0 or not end_timeout > 0:
            raise ValueError("flowcontrol: timeouts must be positive seconds")
        self.address = address
        self.timeout = float(timeout)
        self.end_timeout = float(end_timeout)
        self.failure_mode: FailureMode = failure_mode
        self._https = u.scheme == "https"
        if ssl_context is not None and not self._https:
            raise ValueError(f"flowcontrol: ssl_context given for the plain-text address {address!r}; use https://")
        self._ssl = ssl_context
        self._host = u.hostname
        self._port = u.port or (443 if self._https else 80)
        self._prefix = u.path.rstrip("/")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._local = threading.local()
        self._warned = 0.0

    # -- transport -------------------------------------------------------

    def _conn(self, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        c: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if c is not None:
            c.timeout = timeout
            if c.sock is not None:
                c.sock.settimeout(timeout)
            return c, True
        if self._https:
            c = http.client.HTTPSConnection(self._host, self._port, timeout=timeout, context=self._ssl)
        else:
            c = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._local.conn = c
        return c, False

    def _drop(self) -> None:
        c = getattr(self._local, "conn", None)
        self._local.conn = None
        if c is not None:
            c.close()

    def _post(self, path: str, payload: dict[str, Any], timeout: float) -> tuple[int, bytes]:
        body = json.dumps(payload, separators=(",", ":")).encode()
        for attempt in (0, 1):
            c, reused = self._conn(timeout)
            try:
                c.request("POST", self._prefix + path, body=body, headers=self._headers)
                r = c.getresponse()
                data = r.read()
                if r.will_close:
                    self._drop()
                return r.status, data
            except _RETRYABLE:
                self._drop()
                if reused and attempt == 0:
                    continue  # a keep-alive connection the agent had closed
                raise
            except BaseException:
                self._drop()
                raise
        raise AssertionError("unreachable")

    # -- API -------------------------------------------------------------

    def check(
        self,
        control_point: str,
        labels: Mapping[str, str] | None = None,
        tokens: float | None = None,
        timeout: float | None = None,
    ) -> Decision:
        """Ask whether to admit one flow at control_point with labels,
        costing tokens (default 1). Never raises for agent trouble: the
        failure mode decides instead."""
        if not control_point:
            raise ValueError("flowcontrol: control_point is required")
        req: dict[str, Any] = {"control_point": control_point}
        if labels:
            req["labels"] = {str(k): str(v) for k, v in labels.items()}
        if tokens is not None:
            if tokens < 0:
                raise ValueError(f"flowcontrol: tokens must not be negative, got {tokens!r}")
            req["tokens"] = float(tokens)
        t = self.timeout if timeout is None else timeout
        try:
            status, data = self._post("/v1/check", req, t)
            if status != 200:
                raise RuntimeError(f"agent answered {status}: {data[:200].decode(errors='replace').strip()}")
            return Decision.from_response(json.loads(data))
        except Exception as e:  # every agent failure goes to the failure mode
            return self._fail(control_point, f"{type(e).__name__}: {e}")

    def _fail(self, control_point: str, error: str) -> Decision:
        now = time.monotonic()
        if now - self._warned >= 10.0:
            self._warned = now
            log.warning("fluxgate: check at %r against %s failed (%s); %s", control_point, self.address, error, self.failure_mode)
        if self.failure_mode == "fail_open":
            return Decision(accepted=True, reason="failed_open", control_point=control_point, error=error)
        return Decision(accepted=False, reason="failed_closed", status_code=503, control_point=control_point, error=error)

    def end(self, decision: Decision, failed: bool = False) -> bool:
        """Report that the flow decision admitted ended (failed: an error or
        a 5xx). Returns whether the agent held a slot for it; False also
        when there is nothing to report (no flow_id) or the report failed."""
        if not decision.flow_id:
            return False
        try:
            status, data = self._post("/v1/flow/end", {"flow_id": decision.flow_id, "failed": bool(failed)}, self.end_timeout)
            if status != 200:
                log.debug("fluxgate: flow end answered %d: %r", status, data[:200])
                return False
            return bool(json.loads(data).get("found"))
        except Exception as e:
            log.debug("fluxgate: flow end of %s failed: %s", decision.flow_id, e)
            return False

    async def acheck(
        self,
        control_point: str,
        labels: Mapping[str, str] | None = None,
        tokens: float | None = None,
        timeout: float | None = None,
    ) -> Decision:
        """check, run in a worker thread."""
        return await asyncio.to_thread(self.check, control_point, labels, tokens, timeout)

    async def aend(self, decision: Decision, failed: bool = False) -> bool:
        """end, run in a worker thread."""
        if not decision.flow_id:
            return False
        return await asyncio.to_thread(self.end, decision, failed)

    def close(self) -> None:
        """Close this thread's connection to the agent."""
        self._drop()
