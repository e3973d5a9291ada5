"""The suppression list (hard rule 6): people who erased their data or opted out are recognised at the door.

An entry is a template of the person (kept with their consent, for this use only) and the purposes it covers
("*" = every purpose). Ingestion asks `screen()` which of an image's faces match an entry covering one of the
source's purposes, and drops those before anything is stored. A face matches when its Euclidean distance to an
entry is at most the model's calibrated 'strong' threshold: a stranger comes that close about once in 10^4
comparisons, so an opt-out costs other people very little, while the same person's other photos (typically
0.3-0.45 away) are caught.

The entries live in memory in a FAISS exact index, reloaded whenever the table changes (another process may add
entries): every change made here bumps a counter in `meta`, and the table's row count and highest id catch
rows written by other code.
"""

from __future__ import annotations

import base64
import math
import secrets
import threading
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from facetrail.audit.log import AuditLog
from facetrail.crypto.vault import Vault
from facetrail.errors import FacetrailError, InvalidValueError
from facetrail.policy.sources import validate_purposes
from facetrail.store.db import Database
from facetrail.store.models import Meta, Suppression
from facetrail.store.templates import open_templates, seal_template
from facetrail.vision.calibration import Band, load_calibration

ALL_PURPOSES = "*"
GENERATION_KEY = "suppression_generation"

Signature = tuple[int, int, int]
"""(change counter, number of entries, highest entry id) of this model's part of the table."""


@dataclass(frozen=True)
class _Entries:
    signature: Signature
    index: Any  # faiss.IndexFlatL2 over the entries' templates, in `purposes` order; None when there are none
    purposes: tuple[frozenset[str], ...]


class SuppressionList:
    """The opt-out entries of one template space (`model_id`): templates of two models never compare."""

    def __init__(self, db: Database, audit: AuditLog, vault: Vault, *, model_id: str, dim: int,
                 threshold: float | None = None) -> None:
        self.db = db
        self.audit = audit
        self.vault = vault
        self.model_id = model_id
        self.dim = dim
        if threshold is None:
            calibration = load_calibration(model_id)
            threshold = calibration.threshold(Band.STRONG) if calibration is not None else None
        # None: an uncalibrated model, for which no distance can be said to mean "the same person".
        self.threshold = threshold
        self._lock = threading.Lock()
        self._entries: _Entries | None = None

    # -- changing the list -----------------------------------------------------------------------
    def add(self, request_id: str | None, templates: Iterable[NDArray[np.float32]],
            purposes: Sequence[str], *, actor_name: str = "system") -> int:
        """Add the person's templates for these purposes (["*"] = all); returns how many entries were added.
        Each entry is sealed under a data key of its own."""
        covered = _clean_purposes(purposes)
        vectors = [self._checked(template) for template in templates]
        if not vectors:
            raise InvalidValueError("templates", "an opt-out needs at least one template of the person")
        keys = self.vault.new_keys("suppression", len(vectors))
        rows = [Suppression(request_id=request_id, model_id=self.model_id, purposes=covered,
                            template=seal_template(self.vault, key, vector), key_id=key.id)
                for key, vector in zip(keys, vectors, strict=True)]
        with self.db.write() as session, session.begin():
            session.add_all(rows)
            mark_changed(session)
            self.audit.record(session, actor=actor_name, action="suppression.added", details={
                "request_id": request_id, "entries": len(rows), "purposes": covered, "model_id": self.model_id})
            # The ledger outlives a restore of an older backup, which must not forget an opt-out.
            self.vault.keyring.record({
                "uid": secrets.token_hex(16), "kind": "suppression.added", "request_id": request_id,
                "model_id": self.model_id, "purposes": covered,
                "entries": [{"key_id": row.key_id, "template": base64.b64encode(row.template).decode()}
                            for row in rows]})
        return len(rows)

    def remove(self, request_id: str, *, actor_name: str = "system") -> int:
        """Withdraw the entries of one request (the person withdrew their opt-out); returns how many."""
        with self.db.read() as session:
            keys = list(session.scalars(select(Suppression.key_id).where(Suppression.request_id == request_id)))
        # Their templates are no longer kept with consent: shredded first, here and in every backup (a crash
        # before the rows go leaves rows that open with nothing, which the list skips and this call removes).
        self.vault.keyring.destroy([k for k in keys if k], {
            "uid": secrets.token_hex(16), "kind": "suppression.removed", "request_id": request_id})
        with self.db.write() as session, session.begin():
            removed = len(session.scalars(delete(Suppression).where(Suppression.request_id == request_id)
                                          .returning(Suppression.id)).all())
            mark_changed(session)
            self.audit.record(session, actor=actor_name, action="suppression.removed",
                              details={"request_id": request_id, "entries": removed})
        return removed

    def _checked(self, template: NDArray[np.float32]) -> NDArray[np.float32]:
        vector = np.asarray(template, dtype=np.float32).reshape(-1)
        if vector.shape != (self.dim,) or not np.all(np.isfinite(vector)):
            raise InvalidValueError("templates", f"a template of {self.model_id} has {self.dim} finite values")
        return vector

    # -- testing faces against it ----------------------------------------------------------------
    def screen(self, templates: Sequence[NDArray[np.float32]], purposes: Collection[str], *,
               session: Session | None = None) -> list[bool]:
        """For each template, whether an entry covering one of `purposes` matches it (True = drop the face).

        Pass the caller's write transaction as `session` to decide under the write lock, so that no entry
        can be added between the decision and the commit that relies on it."""
        if not templates:
            return [False] * len(templates)
        entries = self._current(session)
        if entries.index is None:
            return [False] * len(templates)
        if self.threshold is None:
            raise FacetrailError(f"the suppression list cannot be applied: model {self.model_id} has no "
                                 "calibration, so no distance is known to mean the same person")
        wanted = frozenset(purposes)
        queries = np.ascontiguousarray(np.stack(templates), dtype=np.float32).reshape(-1, self.dim)
        # IndexFlatL2 works in squared distances and keeps only results strictly below the radius.
        radius = math.nextafter(float(self.threshold) ** 2, math.inf)
        lims, _distances, labels = entries.index.range_search(queries, radius)
        found = []
        for i in range(len(queries)):
            hits = labels[lims[i]:lims[i + 1]]
            found.append(any(_covers(entries.purposes[int(j)], wanted) for j in hits))
        return found

    def signature(self, session: Session | None = None) -> Signature:
        if session is None:
            with self.db.read() as own:
                return self._signature(own)
        return self._signature(session)

    def __len__(self) -> int:
        index = self._current(None).index
        return 0 if index is None else int(index.ntotal)

    def _signature(self, session: Session) -> Signature:
        counter = session.scalar(select(Meta.value).where(Meta.key == GENERATION_KEY))
        count, highest = session.execute(select(func.count(), func.max(Suppression.id))
                                          .where(Suppression.model_id == self.model_id)).one()
        return int(counter or 0), int(count or 0), int(highest or 0)

    def _current(self, session: Session | None) -> _Entries:
        with self._lock:
            signature = self.signature(session)
            if self._entries is None or self._entries.signature != signature:
                self._entries = self._load(signature, session)
            return self._entries

    def _load(self, signature: Signature, session: Session | None) -> _Entries:
        query = select(Suppression.template, Suppression.purposes, Suppression.key_id).where(
            Suppression.model_id == self.model_id).order_by(Suppression.id)
        if session is None:
            with self.db.read() as own:
                rows = own.execute(query).all()
        else:
            rows = session.execute(query).all()
        # An entry whose key was destroyed (an opt-out withdrawn, cut off before its rows went) matches nobody.
        alive = self.vault.keyring.existing([r.key_id for r in rows if r.key_id])
        rows = [r for r in rows if r.key_id in alive]
        index = None
        if rows:  # FAISS is imported only then: an empty list (the usual case) costs a command nothing
            import faiss

            index = faiss.IndexFlatL2(self.dim)
            index.add(np.stack(open_templates(self.vault, [r.template for r in rows], self.dim)))
        return _Entries(signature, index, tuple(frozenset(r.purposes) for r in rows))


def _clean_purposes(purposes: Sequence[str]) -> list[str]:
    if isinstance(purposes, str):
        raise InvalidValueError("purposes", "a list of purposes, or ['*'] for all")
    if any(p == ALL_PURPOSES for p in purposes):
        return [ALL_PURPOSES]
    return list(validate_purposes(purposes))


def _covers(entry: frozenset[str], purposes: frozenset[str]) -> bool:
    return ALL_PURPOSES in entry or not entry.isdisjoint(purposes)


def mark_changed(session: Session) -> None:
    """Tell every process holding the list to reload it (call inside the transaction that changed it)."""
    row = session.scalar(select(Meta).where(Meta.key == GENERATION_KEY))
    if row is None:
        session.add(Meta(key=GENERATION_KEY, value="1"))
    else:
        row.value = str(int(row.value) + 1)
