"""Enforcement orders (hard rule 10): recorded, obeyed at the door (policy/cease.py), carried out by an
erasure job, and accounted for with a status and a report for the authority.

    order = ft.orders.add(actor, authority="CNIL", reference="MED-2021-134", ...)
    ft.orders.run(actor, order.id)            # erases what it reaches, resumable
    ft.orders.status_all(actor)               # -> list[OrderStatus]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime

from sqlalchemy import select, update

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.log import AuditLog
from facetrail.compliance import scope
from facetrail.compliance.batches import ErasureJobs, JobOutcome, Progress, erase_until_gone
from facetrail.compliance.order_spec import validate_order
from facetrail.compliance.report import ComplianceReport, OrderReport, erasure_summary
from facetrail.compliance.status import JobState, OrderStatus, penalty_clock
from facetrail.errors import ConflictError, InvalidValueError, NotFoundError
from facetrail.rights.erasure import ErasureService
from facetrail.store.db import Database
from facetrail.store.models import EnforcementOrder, Source, utcnow

Clock = Callable[[], datetime]


def order_cause(order_id: int) -> str:
    """How the erasures made for an order are marked (Erasure.cause)."""
    return f"order:{order_id}"


class OrderService(ErasureJobs):
    def __init__(self, db: Database, eraser: ErasureService, audit: AuditLog, *, batch: int,
                 clock: Clock = utcnow, after_job: Callable[[str], object] | None = None) -> None:
        super().__init__(db, eraser, audit, batch=batch, clock=clock, after_job=after_job)
        self.receipts = eraser.completed

    def add(self, actor: Actor, *, authority: str, reference: str, received_on: date | str,
            jurisdictions: Iterable[str] = (), source_ids: Iterable[int] = (), cease: bool, erase: bool,
            deadline: date | str, daily_penalty: int, currency: str = "EUR",
            answer_access_first: bool = False) -> EnforcementOrder:
        """Record an order. From its commit on, ingestion refuses the data it covers if it orders to cease."""
        require(actor, Action.ORDERS_WRITE)
        spec = validate_order(authority=authority, reference=reference, received_on=received_on,
                              jurisdictions=jurisdictions, source_ids=source_ids, cease=cease, erase=erase,
                              deadline=deadline, daily_penalty=daily_penalty, currency=currency,
                              answer_access_first=answer_access_first)
        with self.db.write() as session, session.begin():
            known = set(session.scalars(select(Source.id).where(Source.id.in_(spec.source_ids))))
            missing = sorted(set(spec.source_ids) - known)
            if missing:
                raise InvalidValueError("source_ids", f"no source {', '.join(map(str, missing))} is registered")
            now = self.clock()
            order = EnforcementOrder(
                authority=spec.authority, reference=spec.reference, received_on=spec.received_on,
                jurisdictions=list(spec.jurisdictions), source_ids=list(spec.source_ids), cease=spec.cease,
                erase=spec.erase, deadline=spec.deadline, daily_penalty=spec.daily_penalty, currency=spec.currency,
                answer_access_first=spec.answer_access_first, recorded_at=now, recorded_by=actor.name,
                items_refused=0, job_state=(JobState.NOT_STARTED if spec.erase else JobState.NOT_ORDERED).value,
                # Ceasing collection takes effect as the order is recorded: complied with at once.
                complied_at=None if spec.erase else now,
            )
            session.add(order)
            session.flush()
            self.audit.record(session, actor=actor.name, action="order.add", details={
                "order_id": order.id, "authority": order.authority, "reference": order.reference,
                "received_on": order.received_on.isoformat(), "jurisdictions": order.jurisdictions,
                "source_ids": order.source_ids, "cease": order.cease, "erase": order.erase,
                "deadline": order.deadline.isoformat(), "daily_penalty": order.daily_penalty,
                "currency": order.currency, "answer_access_first": order.answer_access_first,
                "images_in_scope": len(scope.images_in_scope(session, order.jurisdictions, order.source_ids)),
            })
        return order

    def status(self, actor: Actor, order_id: int) -> OrderStatus:
        require(actor, Action.ORDERS_READ)
        return self._status(self._order(order_id))

    def status_all(self, actor: Actor) -> list[OrderStatus]:
        """Every order's status, oldest first (what the regulator export reads)."""
        require(actor, Action.ORDERS_READ)
        with self.db.read() as session:
            orders = list(session.scalars(select(EnforcementOrder).order_by(EnforcementOrder.id)))
        return [self._status(order) for order in orders]

    def run(self, actor: Actor, order_id: int, *, progress: Progress | None = None) -> OrderStatus:
        """Erase every image the order reaches, in batches (each one complete erasure); run it again after an
        interruption to go on. With `answer_access_first`, images holding faces matched by open access
        requests are left until those requests close, and the job says it is waiting."""
        require(actor, Action.ORDERS_WRITE)
        order = self._order(order_id)
        if not order.erase:
            raise ConflictError(f"order {order_id} orders no erasure (measures: cease collection)")
        with self.db.write() as session, session.begin():
            session.execute(update(EnforcementOrder).where(EnforcementOrder.id == order_id).values(
                job_state=JobState.RUNNING.value, job_started_at=order.job_started_at or self.clock()))
            self.audit.record(session, actor=actor.name, action="order.run", details={"order_id": order_id})
        outcome = erase_until_gone(self.eraser, actor.name, lambda: self._targets(order),
                                   cause=order_cause(order_id), batch=self.batch, progress=progress)
        return self._job_done(actor, order_id, outcome)

    def report(self, actor: Actor, order_id: int | None = None) -> ComplianceReport:
        """The compliance report for the authority, for one order or all of them; producing it is audited."""
        require(actor, Action.ORDERS_READ)
        statuses = [self.status(actor, order_id)] if order_id is not None else self.status_all(actor)
        orders = tuple(OrderReport(s, tuple(erasure_summary(r) for r in self.receipts(order_cause(s.order_id))))
                       for s in statuses)
        with self.db.write() as session, session.begin():
            entry = self.audit.record(session, actor=actor.name, action="order.report",
                                      details={"order_ids": [s.order_id for s in statuses]})
            head = (entry.seq, entry.hash)
        return ComplianceReport(utcnow(), actor.name, orders, head)  # each status has its own as_of

    def _job_done(self, actor: Actor, order_id: int, outcome: JobOutcome) -> OrderStatus:
        """The end of a run: completed when nothing in scope is left, waiting when what is left is held for
        open access requests; recorded and audited in one transaction."""
        status = self._status(self._order(order_id))
        done = status.images_remaining == 0
        with self.db.write() as session, session.begin():
            order = session.get(EnforcementOrder, order_id)
            assert order is not None
            order.job_state = (JobState.COMPLETED if done else JobState.WAITING).value
            if done and order.complied_at is None:
                order.complied_at = self.clock()
            self.audit.record(session, actor=actor.name, action="order.completed" if done else "order.waiting",
                              details={"order_id": order_id, "images_erased": outcome.images_erased,
                                       "faces_erased": outcome.faces_erased, "erasure_ids": outcome.erasure_ids,
                                       "images_remaining": status.images_remaining,
                                       "images_held": status.images_held,
                                       "held_for_requests": list(status.held_for_requests)})
        self._job_ended(f"order {order_id}")
        return self._status(self._order(order_id))

    def _targets(self, order: EnforcementOrder) -> list[int]:
        with self.db.read() as session:
            images = scope.images_in_scope(session, order.jurisdictions, order.source_ids)
            if order.answer_access_first and images:
                held = scope.images_holding(session, scope.access_holds(session).face_ids)
                images = [i for i in images if i not in held]
        return images

    def _order(self, order_id: int) -> EnforcementOrder:
        if isinstance(order_id, bool) or not isinstance(order_id, int):
            raise InvalidValueError("order", f"{order_id!r} is not an order id")
        with self.db.read() as session:
            order = session.get(EnforcementOrder, order_id)
        if order is None:
            raise NotFoundError(f"no enforcement order {order_id} is recorded")
        return order

    def _status(self, order: EnforcementOrder) -> OrderStatus:
        now = self.clock()
        with self.db.read() as session:
            images = scope.images_in_scope(session, order.jurisdictions, order.source_ids) if order.erase else []
            faces = scope.count_faces(session, images)
            holds = scope.access_holds(session) if order.answer_access_first and images else None
            held = scope.images_holding(session, holds.face_ids) & set(images) if holds else set()
        receipts = self.receipts(order_cause(order.id))
        complied_at = order.complied_at if not images else None
        days_left, days_late, penalty = penalty_clock(order.deadline, order.daily_penalty, now, complied_at)
        return OrderStatus(
            order_id=order.id, authority=order.authority, reference=order.reference, received_on=order.received_on,
            jurisdictions=tuple(order.jurisdictions), source_ids=tuple(order.source_ids), cease=order.cease,
            erase=order.erase, answer_access_first=order.answer_access_first, deadline=order.deadline,
            daily_penalty=order.daily_penalty, currency=order.currency, recorded_at=order.recorded_at,
            recorded_by=order.recorded_by, job_state=JobState(order.job_state), images_remaining=len(images),
            faces_remaining=faces, images_held=len(held),
            held_for_requests=holds.request_ids if holds and held else (),
            unverified_access_requests=holds.unmatched_request_ids if holds else (),
            images_erased=sum(int(r["images_deleted"]) for r in receipts),
            faces_erased=sum(int(r["faces_erased"]) for r in receipts), items_refused=order.items_refused,
            complied=complied_at is not None, complied_at=complied_at, as_of=now, days_left=days_left,
            days_late=days_late, penalty_accrued=penalty,
        )

    # Last in the class: below it, `list` would name this method.
    def list(self, actor: Actor) -> list[EnforcementOrder]:
        require(actor, Action.ORDERS_READ)
        with self.db.read() as session:
            return list(session.scalars(select(EnforcementOrder).order_by(EnforcementOrder.id)))
