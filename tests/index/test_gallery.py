"""The gallery keeps the index in step with the store, and rebuilds it from the store when needed."""

from __future__ import annotations

import sqlite3

from facetrail.accounts.roles import Actor
from facetrail.runtime import Facetrail
from tests.conftest import sample_bytes


def result_ids(ft: Facetrail, actor: Actor, photo: str = "obama2.jpg") -> list[tuple[int, float]]:
    outcome = ft.search.search(actor, sample_bytes(photo), purpose="demo", case_ref="t", top_k=30, min_band="none")
    return [(r.face_id, r.score) for r in outcome.results]


def test_rebuilt_index_returns_the_same_results(samples_ft: Facetrail, actor: Actor) -> None:
    before = result_ids(samples_ft, actor)
    report = samples_ft.rebuild_index(actor)
    assert report.rebuilt and report.added == len(samples_ft.gallery.index())
    assert result_ids(samples_ft, actor) == before
    assert len(before) == 26


def test_missing_index_file_is_rebuilt_on_open(samples_ft: Facetrail, actor: Actor) -> None:
    before = result_ids(samples_ft, actor)
    samples_ft.close()
    samples_ft.gallery.path.unlink()
    reopened = Facetrail.open(samples_ft.data, workers=1)
    assert result_ids(reopened, actor) == before
    assert reopened.gallery.last_sync is not None and reopened.gallery.last_sync.rebuilt
    reopened.close()


def test_corrupt_index_file_is_rebuilt_on_open(samples_ft: Facetrail, actor: Actor) -> None:
    before = result_ids(samples_ft, actor)
    samples_ft.close()
    raw = bytearray(samples_ft.gallery.path.read_bytes())
    raw[len(raw) // 2] ^= 0x55
    samples_ft.gallery.path.write_bytes(bytes(raw))
    reopened = Facetrail.open(samples_ft.data, workers=1)
    assert result_ids(reopened, actor) == before
    assert "damaged" in reopened.gallery.last_sync.reason  # type: ignore[union-attr]  # the AES-GCM tag
    reopened.close()


def test_stale_index_catches_up_with_the_store(samples_ft: Facetrail, actor: Actor) -> None:
    """A face deleted from the store by another process disappears from this process's results."""
    before = result_ids(samples_ft, actor)
    victim = before[0][0]
    conn = sqlite3.connect(samples_ft.data / "facetrail.db")
    conn.execute("DELETE FROM faces WHERE id = ?", (victim,))
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'index_generation'")
    conn.commit()
    conn.close()
    after = result_ids(samples_ft, actor)
    assert victim not in [face_id for face_id, _ in after]
    assert after == before[1:]
