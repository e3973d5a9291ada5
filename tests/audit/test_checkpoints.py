"""Signed checkpoints bind the audit log: an insider with the whole data directory, who recomputes every hash,
is still caught by `audit verify --against` a checkpoint kept outside."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from facetrail.cli.main import app
from facetrail.runtime import Facetrail, local_actor
from tests.audit import insider
from tests.conftest import StoreDb, add_source


def open_data(data: Path, **overrides: object) -> Facetrail:
    """Open a data directory, made when new (the one place to change should making one need a flag)."""
    return Facetrail.open(data, create=True, workers=1, **overrides)


def altered(details: str) -> str:
    """An entry's details with one more field: still valid JSON, a different entry."""
    return json.dumps({**json.loads(details), "changed": True})


class Env:
    """A data directory, a signing key outside it, and the CLI run against them."""

    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.key = tmp_path / "outside" / "audit.key"
        self.public = tmp_path / "outside" / "audit.key.pub"
        self.kept = tmp_path / "dpo" / "checkpoints.txt"  # what the DPO keeps, away from the data directory
        self.kept.parent.mkdir()
        self.first = 0
        """The size of the first checkpoint the DPO keeps."""

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(app, ["--data", str(self.data), *args])

    def grow(self, n: int, start: int = 0) -> None:
        ft = open_data(self.data)
        for i in range(start, start + n):
            add_source(ft, name=f"source {i}")
        ft.close()

    def checkpoint(self) -> int:
        """Sign a checkpoint, kept by the DPO; its size."""
        result = self.cli("audit", "checkpoint", "--append", str(self.kept))
        assert result.exit_code == 0, result.output
        return int(result.output.split("\n")[1])

    def verify_against(self) -> Result:
        return self.cli("audit", "verify", "--against", str(self.kept), "--public-key", str(self.public))


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    env = Env(tmp_path)
    created = env.cli("audit", "keygen", str(env.key))
    assert created.exit_code == 0, created.output
    assert env.public.read_text().strip() in created.output.replace("\n", "")
    monkeypatch.setenv("FACETRAIL_AUDIT_SIGNING_KEY_FILE", str(env.key))
    env.grow(6)
    env.first = env.checkpoint()
    return env


def test_a_checkpoint_is_a_signed_note(env: Env) -> None:
    lines = env.kept.read_text().split("\n")
    assert env.first >= 6
    assert lines[0] == "facetrail-audit" and lines[3].startswith("time ") and lines[4] == ""
    assert lines[5].startswith("\u2014 facetrail-audit ")
    kept_here = sorted((env.data / "audit-checkpoints").glob("*.checkpoint"))
    assert [p.name for p in kept_here] == [f"{env.first:012d}.checkpoint"]
    entries = json.loads(env.cli("audit", "list", "--json").output)
    assert len(entries) == env.first + 1
    assert entries[-1]["action"] == "audit.checkpoint" and json.loads(entries[-1]["details"])["size"] == env.first


def test_an_honest_log_that_grew_verifies(env: Env) -> None:
    env.grow(5, start=10)
    env.checkpoint()
    env.grow(2, start=20)
    result = env.verify_against()
    assert result.exit_code == 0, result.output
    assert f"checkpoint of {env.first} entries" in result.output
    assert f"the log extends it ({env.first} -> " in result.output
    assert result.output.count("the log extends it") == 2
    as_json = json.loads(env.cli("audit", "verify", "--against", str(env.kept), "--public-key", str(env.public),
                                 "--json").output)
    assert as_json["ok"] and [c["ok"] for c in as_json["checkpoints"]] == [True, True]
    assert all(c["consistency"] for c in as_json["checkpoints"])


def test_one_row_edited_and_the_chain_recomputed_is_caught(env: Env) -> None:
    def edit(rows: list[insider.Row]) -> list[insider.Row]:
        rows[2]["details"] = altered(rows[2]["details"])
        return rows

    insider.rewrite(env.data, edit)
    assert env.cli("audit", "verify").exit_code == 0  # the chain alone is fooled: every hash was recomputed
    result = env.verify_against()
    assert result.exit_code == 1
    assert f"checkpoint of {env.first} entries" in result.output
    assert "do not hash to the checkpoint's root" in result.output


def test_rows_cut_from_the_end_with_the_head_deleted_are_caught(env: Env) -> None:
    insider.rewrite(env.data, lambda rows: rows[:4])
    assert env.cli("audit", "verify").exit_code == 0
    result = env.verify_against()
    assert result.exit_code == 1 and f"fewer than the {env.first} the checkpoint covers" in result.output


def test_rows_reordered_are_caught(env: Env) -> None:
    insider.rewrite(env.data, lambda rows: [rows[1], rows[0], *rows[2:]])
    assert env.cli("audit", "verify").exit_code == 0
    result = env.verify_against()
    assert result.exit_code == 1 and "do not hash" in result.output


def test_a_row_removed_from_the_middle_then_the_log_regrown_is_caught(env: Env) -> None:
    """The insider deletes a covered entry and pads the log back past the checkpoint's size."""
    insider.rewrite(env.data, lambda rows: rows[:3] + rows[4:] + [dict(rows[-1], at="2026-12-01T00:00:00+00:00")] * 3)
    result = env.verify_against()
    assert result.exit_code == 1 and "do not hash" in result.output


def test_the_database_replaced_by_an_older_copy_is_caught(env: Env, tmp_path: Path, store_db: StoreDb) -> None:
    older = tmp_path / "older"
    shutil.copytree(env.data, older)  # a copy taken before the next checkpoint
    older_db = store_db.save()
    env.grow(4, start=10)
    second = env.checkpoint()
    shutil.rmtree(env.data)
    shutil.copytree(older, env.data)
    store_db.copy_from(older_db)
    assert env.cli("audit", "verify").exit_code == 0
    result = env.verify_against()
    assert result.exit_code == 1 and f"fewer than the {second} the checkpoint covers" in result.output
    assert f"checkpoint of {env.first} entries" in result.output  # the first still holds for the older copy
    # The older copy then grown past the checkpoint's size: it has the entries, not the same ones.
    env.grow(12, start=30)
    result = env.verify_against()
    assert result.exit_code == 1 and "do not hash to the checkpoint's root" in result.output


def test_an_altered_or_foreign_checkpoint_is_refused(env: Env, tmp_path: Path) -> None:
    text = env.kept.read_text()
    env.kept.write_text(text.replace(f"\n{env.first}\n", f"\n{env.first - 1}\n", 1))
    result = env.verify_against()
    assert result.exit_code == 2 and "signature is wrong" in result.output
    env.kept.write_text(text)
    other = tmp_path / "other.key"
    assert env.cli("audit", "keygen", str(other)).exit_code == 0
    result = env.cli("audit", "verify", "--against", str(env.kept), "--public-key", f"{other}.pub")
    assert result.exit_code == 2 and "no signature by key" in result.output


def test_the_server_refuses_to_sign_a_rewritten_log(env: Env) -> None:
    def edit(rows: list[insider.Row]) -> list[insider.Row]:
        rows[0]["actor"] = "someone else"
        return rows

    kept_here = env.data / "audit-checkpoints"
    saved = {p.name: p.read_bytes() for p in kept_here.iterdir()}
    insider.rewrite(env.data, edit)
    kept_here.mkdir()
    for name, content in saved.items():
        (kept_here / name).write_bytes(content)
    result = env.cli("audit", "checkpoint")
    assert result.exit_code == 1 and f"no longer extends the checkpoint of {env.first} entries" in result.output


def test_inclusion_proofs_check_and_tampered_ones_fail(env: Env, tmp_path: Path) -> None:
    proof_file = tmp_path / "proof.json"
    result = env.cli("audit", "prove", "3")
    assert result.exit_code == 0, result.output
    proof = json.loads(result.output)
    assert proof["tree_size"] == env.first and proof["entry"]["seq"] == 3 and proof["checkpoint"]
    proof_file.write_text(result.output)

    def check() -> Result:
        return CliRunner().invoke(app, ["audit", "check-inclusion", str(proof_file), "--against", str(env.kept),
                                        "--public-key", str(env.public)])

    ok = check()
    assert ok.exit_code == 0 and f"entry 3 is in the signed tree of {env.first} entries" in ok.output
    for field, value in (("details", altered(proof["entry"]["details"])), ("actor", "mallory")):
        proof_file.write_text(json.dumps({**proof, "entry": {**proof["entry"], field: value}}))
        assert check().exit_code == 1, field
    path = list(proof["audit_path"])
    path[0] = f"{int(path[0][:2], 16) ^ 0xFF:02x}" + path[0][2:]  # every bit of the first byte flipped: always a change
    proof_file.write_text(json.dumps({**proof, "audit_path": path}))
    bad = check()
    assert bad.exit_code == 1 and "not in the checkpoint's tree" in bad.output
    proof_file.write_text(json.dumps({**proof, "seq": 4, "leaf_index": 3}))
    assert check().exit_code == 1
    proof_file.write_text("{not json")
    assert check().exit_code == 2
    actions = [e["action"] for e in json.loads(env.cli("audit", "list", "--json").output)]
    assert "audit.prove" in actions


def test_no_signing_key_is_said_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACETRAIL_AUDIT_SIGNING_KEY_FILE", raising=False)
    env = Env(tmp_path)
    open_data(env.data).close()
    result = env.cli("audit", "verify")
    assert result.exit_code == 0 and "no audit signing key is configured" in result.output
    result = env.cli("audit", "checkpoint")
    assert result.exit_code == 1 and "no audit signing key is configured" in result.output
    result = env.cli("audit", "verify", "--against", str(env.kept))
    assert result.exit_code == 1 and "no public key" in result.output


def test_signing_keys_are_refused_inside_the_data_directory_or_readable_by_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env(tmp_path)
    inside = env.data / "audit.key"
    result = env.cli("audit", "keygen", str(inside))
    assert result.exit_code == 2 and "inside the data directory" in result.output and not inside.exists()
    assert env.cli("audit", "keygen", str(env.key)).exit_code == 0
    again = env.cli("audit", "keygen", str(env.key))
    assert again.exit_code == 2 and "never overwritten" in again.output
    open_data(env.data).close()
    shutil.copy(env.key, inside)
    monkeypatch.setenv("FACETRAIL_AUDIT_SIGNING_KEY_FILE", str(inside))
    result = env.cli("audit", "checkpoint")
    assert result.exit_code == 2 and "inside the data directory" in result.output
    env.key.chmod(0o644)
    monkeypatch.setenv("FACETRAIL_AUDIT_SIGNING_KEY_FILE", str(env.key))
    result = env.cli("audit", "checkpoint")
    assert result.exit_code == 1 and "readable by others" in result.output
    env.key.chmod(0o600)
    env.key.write_text("PRIVATE+KEY+facetrail-audit+00000000+AQ==\n")
    result = env.cli("audit", "checkpoint")
    assert result.exit_code == 2 and "not an Ed25519 key" in result.output


def test_the_key_from_the_environment_and_the_push_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = Env(tmp_path)
    open_data(env.data).close()
    assert env.cli("audit", "keygen", str(env.key)).exit_code == 0
    monkeypatch.setenv("FACETRAIL_AUDIT_SIGNING_KEY", env.key.read_text())
    pushed = tmp_path / "pushed.txt"
    result = env.cli("audit", "checkpoint", "--push-command", f"tee {pushed}", "--json")
    assert result.exit_code == 0, result.output
    assert pushed.read_text() == json.loads(result.output)["checkpoint"]
    failing = env.cli("audit", "checkpoint", "--push-command", "false")
    assert failing.exit_code == 2 and "'false' exited 1" in failing.output


def test_an_erasure_is_followed_by_a_checkpoint(env: Env) -> None:
    ft = open_data(env.data)
    ft.erasure.erase(local_actor().name, [], request_id=None)
    ft.close()
    entries = json.loads(env.cli("audit", "list", "--json", "--limit", "100").output)
    actions = [e["action"] for e in entries]
    assert actions[-2:] == ["erasure.completed", "audit.checkpoint"]
    assert json.loads(entries[-1]["details"])["reason"].startswith("erasure ")
    assert env.verify_against().exit_code == 0


def test_a_kms_hook_that_signs_keeps_the_key_out_of_the_process(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.crypto import kms_hook

    monkeypatch.setenv("FACETRAIL_KMS", "tests.crypto.kms_hook:factory")
    env = Env(tmp_path)
    env.grow(2)
    before = kms_hook.calls["sign"]
    env.checkpoint()
    assert kms_hook.calls["sign"] == before + 1
    assert env.kept.read_text().startswith("kms-audit\n3\n")  # data.create and the two grown entries
    result = env.cli("audit", "verify", "--against", str(env.kept))  # the public key from the hook
    assert result.exit_code == 0 and "the log extends it" in result.output


@pytest.mark.sqlite_only  # `facetrail backup` copies a SQLite store (a PostgreSQL store: pg_dump)
def test_a_restore_sets_later_checkpoints_aside_and_they_hold_for_its_archive(env: Env, tmp_path: Path) -> None:
    from facetrail.backup.archive import create_backup
    from facetrail.backup.restore import restore_backup
    from facetrail.config import get_settings

    ft = open_data(env.data)
    create_backup(ft, local_actor(), tmp_path / "b.tar")
    ft.close()
    env.grow(3, start=10)
    env.checkpoint()  # covers entries the backup does not have
    report = restore_backup(get_settings(data=env.data), tmp_path / "b.tar", local_actor().name)
    archive = report["audit_archive"]
    assert isinstance(archive, dict) and archive["checkpoints"]
    assert not (env.data / "audit-checkpoints" / archive["checkpoints"][0]).exists()
    env.checkpoint()  # the server signs the restored log again
    result = env.verify_against()
    assert result.exit_code == 0, result.output
    assert "a restore rewound the live log" in result.output and "and they match it" in result.output

    archived = env.data / archive["file"]
    lines = archived.read_text().splitlines()
    edited = json.loads(lines[1])
    edited["details"] = altered(edited["details"])
    archived.write_text("\n".join([lines[0], json.dumps(edited), *lines[2:]]) + "\n")
    result = env.verify_against()
    assert result.exit_code == 1 and "the checkpoint covers" in result.output and "restore" not in result.output


def test_checkpoints_after_an_order_go_on_from_the_saved_frontier(env: Env) -> None:
    """After an erasure or an order only the new entries are hashed; the root is the same as over all."""
    frontier = env.data / "audit-checkpoints" / f"{env.first:012d}.frontier"
    assert frontier.exists()
    env.grow(5, start=10)
    ft = open_data(env.data)
    incremental = ft.checkpoint_after("order 1")
    assert incremental is not None
    with ft.db.read() as session:
        assert ft.audit.verify(session, roots_at={incremental.size}).roots[incremental.size] == incremental.root
    (env.data / "audit-checkpoints" / f"{incremental.size:012d}.frontier").write_text('{"frontier": [[3, "00"]]}')
    add_source(ft, name="later")
    fallback = ft.checkpoint_after("order 2")  # a damaged frontier: the whole log is hashed instead
    assert fallback is not None and fallback.size == incremental.size + 2
    ft.close()
    (env.kept.parent / "more.txt").write_text(incremental.text + "\n" + fallback.text)
    result = env.cli("audit", "verify", "--against", str(env.kept.parent / "more.txt"), "--public-key",
                     str(env.public))
    assert result.exit_code == 0 and result.output.count("the log extends it") == 2, result.output
    entries = json.loads(env.cli("audit", "list", "--json", "--limit", "100").output)
    assert [json.loads(e["details"])["reason"] for e in entries if e["action"] == "audit.checkpoint"] == \
        ["on demand", "order 1", "order 2"]
