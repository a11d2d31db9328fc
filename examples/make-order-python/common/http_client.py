"""Calls to make-order's dependencies, through the circuit-proxy sidecar.

Before the migration this module held one pybreaker CircuitBreaker per service and wrapped every
call in it (docs/migrating-from-pybreaker.md shows the old version). The breaker now lives in the
sidecar: this is a plain `requests` call to http://localhost:8080/svc/<name>/..., and a mapping of
the proxy's answers to the errors make-order's own clients have always seen ({"detail": ...}).
"""
from __future__ import annotations

import os
from typing import Any

import requests
from fastapi import HTTPException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

PROXY_URL = os.environ.get("PROXY_URL", "http://localhost:8080").rstrip("/")

# Retries to the sidecar itself only: a refused connection to it sent nothing, so repeating is safe
# (the sidecar restarting). No status is retried here (the proxy's `retries` rule does that, with a
# budget), and Retry-After is never slept on inside a call: an open circuit's 503 stays fail-fast
# (docs/migrating-from-pybreaker.md, "Clients that honour Retry-After").
RETRY = Retry(
    total=2,
    connect=2,
    read=0,
    status=0,
    other=0,
    backoff_factor=0.05,
    status_forcelist=(),
    respect_retry_after_header=False,
    raise_on_status=False,
)

# One pooled session: keep-alive to the sidecar, which keeps its own pool to the upstreams.
_session = requests.Session()
_session.mount("http://", HTTPAdapter(max_retries=RETRY))


def _problem_detail(resp: requests.Response) -> str:
    """The `detail` of the proxy's problem+json (RFC 9457) answer, or its status line."""
    try:
        return str(resp.json().get("detail") or resp.reason)
    except ValueError:
        return f"HTTP {resp.status_code}"


def request_via_proxy(
    service_name: str,
    method: str,
    path: str,
    *,
    timeout: float = 10,
    **kwargs: Any,
) -> requests.Response:
    """`method path` on `service_name` through the sidecar. Raises HTTPException as before the migration.

    - 503 from the proxy itself (application/problem+json; `X-Circuit-Open: <svc>` when the circuit
      is open): the service was not contacted -> 503 "Circuit open for <svc>", with the proxy's
      Retry-After (if it sent one: `rejectRetryAfter`) passed on.
    - 502 (connection refused/reset, DNS, TLS) -> 502 "<svc> unreachable: <reason>".
    - 504 (no response headers within the service's timeout) -> 504 "<svc> timed out after <timeout>".
    The proxy's `detail` already reads as the old messages did; it is passed on as is.
    - Anything else is the service's own answer, returned as is (5xx included: the proxy counted
      it as a failure; the caller decides what it means, as before).

    The timeout here only bounds the call to the sidecar; the upstream's timeout is the proxy's
    (`timeout` in its config), which answers 504 first.
    """
    url = f"{PROXY_URL}/svc/{service_name}{path}"
    try:
        resp = _session.request(method=method, url=url, timeout=timeout, **kwargs)
    except requests.RequestException as exc:
        # The sidecar itself is not reachable: nothing was sent to the service.
        raise HTTPException(status_code=502, detail=f"{service_name} unreachable: circuit-proxy at {PROXY_URL}: {exc}") from exc

    from_proxy = resp.headers.get("content-type", "").startswith("application/problem+json")
    if resp.status_code == 503 and from_proxy:
        told = {"Retry-After": resp.headers["retry-after"]} if "retry-after" in resp.headers else None
        raise HTTPException(status_code=503, detail=_problem_detail(resp), headers=told)
    if resp.status_code in (502, 504) and from_proxy:
        raise HTTPException(status_code=resp.status_code, detail=_problem_detail(resp))
    return resp
