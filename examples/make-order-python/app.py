"""make-order in Python (FastAPI), behind the circuit-proxy sidecar: the reference order flow.

POST /ordering: validate the token (auth) -> get the customer (customer) -> check and then update
stock per item (product) -> create the order (order) -> send a notification (notification; its
failure does not fail the order). Every call goes through common.http_client.request_via_proxy.

Run: PROXY_URL=http://localhost:8080 python3 -m uvicorn app:app --port 8000
(Debian's python3-fastapi, python3-uvicorn, python3-requests: /usr/bin/python3).
"""
from __future__ import annotations

from typing import List, Optional

from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel

from common.http_client import request_via_proxy

app = FastAPI(title="make-order")


class Item(BaseModel):
    productId: str
    quantity: int


class OrderingRequest(BaseModel):
    customerId: Optional[str] = None
    items: List[Item]


def _raise_http_error(resp, status: int) -> None:
    try:
        detail = resp.json().get("error") or resp.text
    except ValueError:
        detail = resp.text
    raise HTTPException(status_code=status, detail=detail)


def _validate_token(auth_header: Optional[str]) -> str:
    resp = request_via_proxy("auth", "get", "/auth/validate", headers={"Authorization": auth_header or ""})
    if resp.status_code != 200:
        _raise_http_error(resp, 401)
    return str(resp.json().get("userId"))


def _get_customer(customer_id: str) -> dict:
    resp = request_via_proxy("customer", "get", f"/customers/{customer_id}")
    if resp.status_code != 200:
        _raise_http_error(resp, 404)
    return resp.json()


def _check_stock(product_id: str, quantity: int) -> None:
    resp = request_via_proxy("product", "get", f"/products/{product_id}/stock", params={"quantity": quantity})
    if resp.status_code != 200:
        _raise_http_error(resp, 404)
    if not resp.json().get("available"):
        raise HTTPException(status_code=400, detail=f"Product {product_id} insufficient stock")


def _update_stock(product_id: str, quantity: int) -> None:
    # A decrement is not idempotent: POST, so the proxy's retry rule never sends it twice.
    resp = request_via_proxy("product", "post", f"/products/{product_id}/stock", json={"decrement": quantity})
    if resp.status_code != 200:
        _raise_http_error(resp, 409)


def _create_order(customer_id: str, items: List[Item]) -> dict:
    resp = request_via_proxy("order", "post", "/orders", json={"customerId": customer_id, "items": [i.dict() for i in items]})
    if resp.status_code != 201:
        _raise_http_error(resp, 502)
    return resp.json()


def _notify(email: str, order_id: str) -> str:
    try:
        resp = request_via_proxy("notification", "post", "/notifications", json={"to": email, "template": "order-created", "orderId": order_id})
    except HTTPException:
        return "failed"  # a notification outage must not fail the order
    if resp.headers.get("x-circuit-fallback"):
        return "degraded"  # the proxy's fallback answered: notification's circuit is open
    return "sent" if resp.status_code < 400 else "failed"


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/ordering", status_code=201)
def ordering(request: OrderingRequest, authorization: Optional[str] = Header(default=None)) -> dict:
    validated_customer_id = _validate_token(authorization)
    customer_id = request.customerId or validated_customer_id
    customer = _get_customer(customer_id)
    if not request.items:
        raise HTTPException(status_code=400, detail="items must be a non-empty list")
    for item in request.items:
        _check_stock(item.productId, item.quantity)
    for item in request.items:
        _update_stock(item.productId, item.quantity)
    order = _create_order(customer_id, request.items)
    return {"order": order, "notification": _notify(customer.get("email", ""), order["id"])}
