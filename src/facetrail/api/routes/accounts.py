"""/v1/accounts: staff accounts (operators: operator and investigator accounts; DPOs: DPO and auditor accounts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from facetrail.accounts.roles import Action, Actor
from facetrail.api.deps import FacetrailDep
from facetrail.api.guard import GuardedRoute, allowed
from facetrail.api.schemas import AccountCreate, AccountCreated, AccountPublic

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], route_class=GuardedRoute)
AccountAdmin = Annotated[Actor, allowed(Action.ACCOUNT_ADMIN, Action.OVERSIGHT_ACCOUNTS)]


@router.get("", response_model=list[AccountPublic])
def list_accounts(ft: FacetrailDep, actor: AccountAdmin) -> list[AccountPublic]:
    return [AccountPublic.model_validate(a) for a in ft.accounts.list(actor)]


@router.post("", response_model=AccountCreated, status_code=201)
def add_account(body: AccountCreate, ft: FacetrailDep, actor: AccountAdmin) -> AccountCreated:
    expires_days = ft.settings.key_ttl_days if body.expires_days is None else body.expires_days
    account, key = ft.accounts.create(actor, name=body.name, role=body.role, purposes=body.purposes,
                                      expires_days=expires_days)
    return AccountCreated(api_key=key, **AccountPublic.model_validate(account).model_dump())
