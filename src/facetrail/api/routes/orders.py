"""/v1/orders: enforcement orders (the DPO records and runs them; an auditor reads them)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from facetrail.accounts.roles import Action, Actor
from facetrail.api.compliance_schemas import OrderCreate, OrderStatusPublic
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed

router = APIRouter(prefix="/v1/orders", tags=["orders"], route_class=GuardedRoute)
OrderReader = Annotated[Actor, allowed(Action.ORDERS_READ)]
OrderWriter = Annotated[Actor, allowed(Action.ORDERS_WRITE)]


@router.get("", response_model=list[OrderStatusPublic])
def list_orders(ft: FacetrailDep, actor: OrderReader) -> list[OrderStatusPublic]:
    """Every order's status: items in scope remaining, deadline, days left or late, penalty accrued."""
    return [OrderStatusPublic.model_validate(s.as_dict()) for s in ft.orders.status_all(actor)]


@router.post("", response_model=OrderStatusPublic, status_code=201)
def add_order(body: OrderCreate, ft: FacetrailDep, actor: OrderWriter) -> OrderStatusPublic:
    """Record an order; with the cease measure, ingestion refuses the data in scope from now on."""
    order = ft.orders.add(actor, **body.model_dump())
    return OrderStatusPublic.model_validate(ft.orders.status(actor, order.id).as_dict())


@router.get("/{order_id}", response_model=OrderStatusPublic)
def order_status(order_id: int, ft: FacetrailDep, actor: OrderReader) -> OrderStatusPublic:
    return OrderStatusPublic.model_validate(ft.orders.status(actor, order_id).as_dict())


@router.post("/{order_id}/run", response_model=OrderStatusPublic)
def run_order(order_id: int, ft: FacetrailDep, actor: OrderWriter) -> OrderStatusPublic:
    """Erase what the order reaches (complete erasure), and answer with its status when done."""
    return OrderStatusPublic.model_validate(ft.orders.run(actor, order_id).as_dict())
