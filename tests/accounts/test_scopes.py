"""API keys scoped by purpose and with an expiry: creation, authentication, the search's purpose check, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from facetrail.accounts.roles import Actor, Role, require_purpose
from facetrail.accounts.service import KeyRefusedError
from facetrail.cli.main import app
from facetrail.errors import AuthenticationError, InvalidValueError, PermissionDeniedError
from facetrail.runtime import Facetrail, local_actor
from facetrail.store.models import Account
from tests.cli.test_cli import init
from tests.conftest import sample_bytes

runner = CliRunner()


def test_a_scoped_key_names_its_purposes(ft: Facetrail) -> None:
    account, key = ft.accounts.create(local_actor(), name="ivy", role="investigator",
                                      purposes=["Press", "case-work", "press"])
    assert account.purposes == ["case-work", "press"]  # validated like a source's: lowercased, no duplicates
    actor = ft.accounts.authenticate(key)
    assert actor == Actor("ivy", Role.INVESTIGATOR, purposes=frozenset({"case-work", "press"}))
    _, unscoped = ft.accounts.create(local_actor(), name="ian", role="investigator")
    assert ft.accounts.authenticate(unscoped).purposes is None
    added = [e for e in ft.read_audit(local_actor(), limit=100) if e.action == "account.add"]
    assert json.loads(added[0].details)["purposes"] == ["case-work", "press"]
    assert json.loads(added[1].details)["purposes"] is None


@pytest.mark.parametrize("purposes", [[], ["Not A Purpose!"], [""], ["x" * 101]])
def test_invalid_purposes_are_refused(ft: Facetrail, purposes: list[str]) -> None:
    with pytest.raises(InvalidValueError) as caught:
        ft.accounts.create(local_actor(), name="ivy", role="investigator", purposes=purposes)
    assert caught.value.field in ("purposes", "purpose")


def test_require_purpose() -> None:
    scoped = Actor("ivy", Role.INVESTIGATOR, purposes=frozenset({"press"}))
    require_purpose(scoped, "press")
    with pytest.raises(PermissionDeniedError, match="'demo'"):
        require_purpose(scoped, "demo")
    require_purpose(Actor("ian", Role.INVESTIGATOR), "demo")  # no scope: any purpose
    require_purpose(local_actor(), "demo")


def test_search_outside_the_scope_is_refused_before_the_photo_is_read(samples_ft: Facetrail) -> None:
    _, key = samples_ft.accounts.create(local_actor(), name="ivy", role="investigator", purposes=["press"])
    ivy = samples_ft.accounts.authenticate(key)
    with pytest.raises(PermissionDeniedError, match="press"):
        samples_ft.search.search(ivy, b"not even a photo", purpose="demo", case_ref="c")
    searches = [e for e in samples_ft.read_audit(local_actor(), limit=1000) if e.action == "search"]
    assert searches == []
    # Inside the scope but with no source for it: an error naming the purposes ivy could search (none here).
    with pytest.raises(InvalidValueError, match="no source is registered for the purpose 'press'.*: none"):
        samples_ft.search.search(ivy, sample_bytes("obama2.jpg"), purpose="press", case_ref="c")


def test_search_inside_the_scope_finds_faces(samples_ft: Facetrail) -> None:
    _, key = samples_ft.accounts.create(local_actor(), name="ivy", role="investigator", purposes=["demo", "press"])
    outcome = samples_ft.search.search(samples_ft.accounts.authenticate(key), sample_bytes("obama2.jpg"),
                                       purpose="DEMO", case_ref="c", top_k=3)
    assert outcome.purpose == "demo" and len(outcome.results) == 3


def test_keys_expire_after_the_default_life_or_their_own(ft: Facetrail) -> None:
    before = datetime.now(UTC)
    default, _ = ft.accounts.create(local_actor(), name="a", role="auditor")
    assert default.expires_at is not None
    assert timedelta(days=90) <= default.expires_at - before <= timedelta(days=90, minutes=1)
    short, _ = ft.accounts.create(local_actor(), name="b", role="auditor", expires_days=2)
    assert short.expires_at is not None and short.expires_at - before < timedelta(days=2, minutes=1)
    forever, key = ft.accounts.create(local_actor(), name="c", role="auditor", expires_days=0)
    assert forever.expires_at is None
    assert ft.accounts.authenticate(key, now=datetime.now(UTC) + timedelta(days=100_000)).name == "c"


@pytest.mark.parametrize("days", [-1, 36_501, True])
def test_invalid_key_life_is_refused(ft: Facetrail, days: int) -> None:
    with pytest.raises(InvalidValueError) as caught:
        ft.accounts.create(local_actor(), name="a", role="auditor", expires_days=days)
    assert caught.value.field == "expires_days"


def test_the_key_life_setting(tmp_path: Path) -> None:
    init(tmp_path)

    def created(name: str, ttl: str, *extra: str) -> dict[str, str | None]:
        result = runner.invoke(app, ["--data", str(tmp_path), "user", "add", name, "--role", "auditor", *extra,
                                     "--json"], env={"FACETRAIL_KEY_TTL_DAYS": ttl})
        assert result.exit_code == 0, result.output
        body: dict[str, str | None] = json.loads(result.output)
        return body

    assert created("a", "0")["expires_at"] is None
    week = created("b", "7")["expires_at"]
    assert week is not None and datetime.fromisoformat(week) - datetime.now(UTC) < timedelta(days=7)
    assert created("c", "7", "--expires-days", "0")["expires_at"] is None  # the key's own life wins


def test_an_expired_key_says_so_only_with_its_secret(ft: Facetrail) -> None:
    account, key = ft.accounts.create(local_actor(), name="a", role="auditor", expires_days=1)
    assert ft.accounts.authenticate(key).name == "a"
    later = datetime.now(UTC) + timedelta(days=1, seconds=1)
    with pytest.raises(KeyRefusedError, match="expired") as caught:
        ft.accounts.authenticate(key, now=later)
    assert caught.value.reason == "expired" and caught.value.account == "a"
    wrong = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthenticationError) as guessed:
        ft.accounts.authenticate(wrong, now=later)
    assert "expired" not in str(guessed.value) and str(guessed.value) == "invalid or missing API key"
    # Moved into the past in the store: refused from then on.
    with ft.db.write() as session, session.begin():
        stored = session.scalar(select(Account).where(Account.id == account.id))
        assert stored is not None
        stored.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(KeyRefusedError, match="expired"):
        ft.accounts.authenticate(key)


@pytest.mark.parametrize("make,reason", [
    (lambda _key: None, "missing"),
    (lambda _key: "garbage", "malformed"),
    (lambda _key: "ft_0000000000000000_" + "a" * 43, "unknown-key"),
    (lambda key: key[:-1] + ("a" if key[-1] != "a" else "b"), "wrong-secret"),
])
def test_refusals_name_their_reason_but_never_the_secret(ft: Facetrail, make: object, reason: str) -> None:
    _, key = ft.accounts.create(local_actor(), name="a", role="auditor")
    offered = make(key)  # type: ignore[operator]
    with pytest.raises(KeyRefusedError) as caught:
        ft.accounts.authenticate(offered)
    refused = caught.value
    assert refused.reason == reason and str(refused) == "invalid or missing API key"
    if reason in ("unknown-key", "wrong-secret"):
        assert refused.key_id == offered.split("_")[1]
    assert refused.account == ("a" if reason == "wrong-secret" else None)
    assert key.split("_", 2)[2] not in repr(vars(refused))


def test_a_disabled_key_is_refused(ft: Facetrail) -> None:
    _, key = ft.accounts.create(local_actor(), name="a", role="auditor")
    ft.accounts.disable(local_actor(), name="a")
    with pytest.raises(KeyRefusedError) as caught:
        ft.accounts.authenticate(key)
    assert caught.value.reason == "disabled" and str(caught.value) == "invalid or missing API key"


def test_cli_adds_scoped_keys_and_lists_them(tmp_path: Path) -> None:
    init(tmp_path)

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, ["--data", str(tmp_path), *args])
        return result.exit_code, result.output

    code, output = run("user", "add", "ivy", "--role", "investigator", "--purpose", "press", "--purpose", "demo",
                       "--expires-days", "30", "--json")
    assert code == 0, output
    created = json.loads(output)
    assert created["purposes"] == ["demo", "press"] and created["api_key"].startswith("ft_")
    code, output = run("user", "add", "ian", "--role", "investigator", "--expires-days", "0")
    assert code == 0 and "any purpose" in output and "never expires" in output
    listed = json.loads(run("user", "list", "--json")[1])
    assert [(a["name"], a["purposes"]) for a in listed] == [("ivy", ["demo", "press"]), ("ian", None)]
    assert listed[0]["expires_at"] and listed[1]["expires_at"] is None
    code, output = run("user", "list")
    assert code == 0 and "demo, press" in output and "never" in output and "expires" in output
    code, output = run("user", "add", "eve", "--role", "investigator", "--purpose", "Bad Purpose!")
    assert code == 2 and "purpose" in output
    code, output = run("user", "add", "eve", "--role", "investigator", "--expires-days", "-1")
    assert code == 2 and "expires_days" in output
