"""The seed's three scenarios through the Python make-order, with Python `requests` as the client.

Usage: python3 scenarios.py <make-order URL> <control URL>
The control URL takes POST /services/product/down and /services/product/up (the test harness
stops and starts the demo product service). Prints a transcript; exits 1 on any deviation.
"""
from __future__ import annotations

import sys
import time

import requests

ORDER = {"items": [{"productId": "1", "quantity": 1}]}
HEADERS = {"Authorization": "Bearer demo-token"}


def main(app: str, control: str) -> int:
    failures = 0

    def order(label: str, expect: int, detail_prefix: str | None = None) -> requests.Response:
        nonlocal failures
        r = requests.post(f"{app}/ordering", json=ORDER, headers=HEADERS, timeout=10)
        detail = r.json().get("detail") if r.status_code >= 400 else None
        ok = r.status_code == expect and (detail_prefix is None or str(detail).startswith(detail_prefix))
        failures += 0 if ok else 1
        extra = f" retry-after={r.headers['retry-after']}" if "retry-after" in r.headers else ""
        print(f"  {'ok ' if ok else 'BAD'} {label:<40} -> {r.status_code}{extra} {detail or ''}".rstrip())
        return r

    print("Scenario 1: all services up")
    order("order placed", 201)

    print("Scenario 2: product service down")
    requests.post(f"{control}/services/product/down", timeout=5)
    for i in range(1, 4):
        order(f"failure {i}/3: product unreachable", 502, "product unreachable: ")
    r = order("circuit open: rejected at once", 503, "Circuit open for product")
    if "retry-after" not in r.headers:
        failures += 1
        print("  BAD no Retry-After on the 503")

    print("Scenario 3: product service back")
    requests.post(f"{control}/services/product/up", timeout=5)
    time.sleep(float(r.headers.get("retry-after", "1")) + 0.2)
    order("trial request succeeds: circuit closes", 201)
    order("normal operation again", 201)

    print("all scenarios passed" if failures == 0 else f"{failures} deviation(s)")
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1].rstrip("/"), sys.argv[2].rstrip("/")))
