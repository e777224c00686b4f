"""Decision: what the agent (or the client's failure mode) decided for one flow."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Decision", "RateLimit"]

HEADER_DECISION = "X-FluxGate-Decision"
HEADER_REASON = "X-FluxGate-Reason"
HEADER_POLICY = "X-FluxGate-Policy"
HEADER_COMPONENT = "X-FluxGate-Component"


@dataclass(frozen=True, slots=True)
class RateLimit:
    """The rate limiter shown in the RateLimit-* headers."""

    limit: float
    remaining: float
    reset: float  # seconds until the bucket is full again


def _seconds(d: Any) -> float | None:
    """A protojson Duration ("1.5s") in seconds."""
    if d is None:
        return None
    if isinstance(d, (int, float)):
        return float(d)
    s = str(d)
    return float(s[:-1]) if s.endswith("s") else float(s)


def _ceil(s: float | None) -> str:
    if s is None or s <= 0:
        return "0"
    return str(math.ceil(s))


def _enum(v: Any, prefix: str) -> str:
    s = str(v or "")
    return s[len(prefix):].lower() if s.startswith(prefix) else s.lower()


@dataclass(frozen=True, slots=True)
class Decision:
    """One flow's decision.

    ``reason`` is ``"none"`` for a flow the agent accepted, the agent's
    reject reason (``rate_limited``, ``not_sampled``, ``no_tokens``,
    ``failed_closed``, ``breaker_open``) for one it rejected, and
    ``failed_open`` / ``failed_closed`` when the agent did not answer and
    the client's failure mode decided (``error`` then says why).
    ``retry_after`` is in seconds (None when the agent gave no wait time),
    ``policy`` is ``namespace/name`` of the component that rejected,
    ``flow_id`` is set when the agent holds a concurrency slot for the flow:
    pass the decision to ``Client.end`` when the flow ends.
    """

    accepted: bool
    reason: str
    retry_after: float | None = None
    policy: str | None = None
    component: str | None = None
    flow_id: str | None = None
    status_code: int = 200
    control_point: str = ""
    flux_meter_names: tuple[str, ...] = ()
    rate_limit: RateLimit | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def failed_open(self) -> bool:
        return self.reason == "failed_open"

    @classmethod
    def from_response(cls, resp: dict[str, Any]) -> Decision:
        """Build a Decision from a protojson CheckResponse."""
        rejected = resp.get("decision_type") == "DECISION_TYPE_REJECTED"
        reason = _enum(resp.get("reject_reason"), "REJECT_REASON_") or "none"
        limiters = resp.get("limiter_decisions") or []
        lim = None
        if rejected:
            lim = next((d for d in limiters if d.get("dropped") and not d.get("dry_run")), None)
        else:
            for d in limiters:
                if d.get("component_type") == "rate_limiter" and float(d.get("limit") or 0) > 0:
                    if lim is None or float(d.get("remaining") or 0) < float(lim.get("remaining") or 0):
                        lim = d
        policy = component = None
        if rejected and lim is not None:
            policy = f"{lim.get('policy_namespace', '')}/{lim.get('policy_name', '')}"
            component = str(lim.get("component_id", ""))
        rate = None
        if lim is not None and lim.get("component_type") == "rate_limiter":
            rate = RateLimit(float(lim.get("limit") or 0), float(lim.get("remaining") or 0), _seconds(lim.get("reset_time")) or 0.0)
        status = 200
        if rejected:
            code = int(resp.get("denied_response_status_code") or 0)
            if 100 <= code <= 599:
                status = code
            else:
                status = {"rate_limited": 429, "not_sampled": 403}.get(reason, 503)
        flow_id = str(resp.get("flow_id") or "0")
        return cls(
            accepted=not rejected,
            reason="none" if not rejected else reason,
            retry_after=_seconds(resp.get("wait_time")) if rejected else None,
            policy=policy,
            component=component,
            flow_id=None if flow_id == "0" else flow_id,
            status_code=status,
            control_point=str(resp.get("control_point") or ""),
            flux_meter_names=tuple(resp.get("flux_meter_names") or ()),
            rate_limit=rate,
            raw=resp,
        )

    def headers(self) -> list[tuple[str, str]]:
        """The response headers that explain the decision, as the agent's
        HTTP adapters and the Go middleware write them: X-FluxGate-Decision,
        and for a rejection X-FluxGate-Reason, -Policy, -Component and
        Retry-After; RateLimit-Limit/-Remaining/-Reset of the deciding rate
        limiter."""
        h = [(HEADER_DECISION, "accepted" if self.accepted else "rejected")]
        if not self.accepted:
            h.append((HEADER_REASON, self.reason))
            if self.policy is not None:
                h.append((HEADER_POLICY, self.policy))
                h.append((HEADER_COMPONENT, self.component or ""))
            if self.retry_after is not None:
                h.append(("Retry-After", _ceil(self.retry_after)))
        if self.rate_limit is not None:
            h.append(("RateLimit-Limit", str(math.floor(self.rate_limit.limit))))
            h.append(("RateLimit-Remaining", str(math.floor(self.rate_limit.remaining))))
            h.append(("RateLimit-Reset", _ceil(self.rate_limit.reset)))
        return h

    def body(self) -> dict[str, Any]:
        """The JSON body of a rejected HTTP request, as the Go middleware
        writes it: {"error": reason, "policy": ..., "retry_after_seconds": n}."""
        b: dict[str, Any] = {"error": self.reason}
        if self.policy is not None:
            b["policy"] = self.policy
        b["retry_after_seconds"] = math.ceil(self.retry_after) if self.retry_after else 0
        return b
