"""The compliance documents and the regulator export, for the DPO and the auditor (who may do what: roles.py).

Each generation reads the store and the settings at that moment and is written to the audit log."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from facetrail.accounts.roles import Action, Actor, require
from facetrail.audit.checkpoints import CheckpointService
from facetrail.audit.note import Checkpoint
from facetrail.compliance import dpia, ropa
from facetrail.compliance.benchmarks import BENCHMARKS, read_benchmark
from facetrail.compliance.export import ExportResult, build
from facetrail.compliance.facts import Collaborators, Facts, gather
from facetrail.compliance.orders import OrderService
from facetrail.errors import NotFoundError


class ComplianceService:
    def __init__(self, parts: Collaborators, orders: OrderService, checkpoints: CheckpointService, *,
                 clock: Callable[[], datetime] | None = None, benchmarks: Path = BENCHMARKS) -> None:
        self.parts = parts
        self.orders = orders
        self.checkpoints = checkpoints
        self.now = clock or (lambda: datetime.now(UTC))
        self.benchmarks = benchmarks

    def facts(self) -> Facts:
        return gather(self.parts, self.now())

    def record_of_processing(self, actor: Actor) -> dict[str, Any]:
        require(actor, Action.COMPLIANCE_READ)
        self._log(actor, "compliance.ropa")
        return ropa.build(self.facts())

    def impact_assessment(self, actor: Actor) -> dict[str, Any]:
        require(actor, Action.COMPLIANCE_READ)
        self._log(actor, "compliance.dpia")
        return dpia.build(self.facts(), read_benchmark(self.parts.model_id, self.benchmarks))

    def regulator_export(self, actor: Actor) -> ExportResult:
        """The export, from one snapshot taken after the export itself is in the log (so it lists itself)."""
        require(actor, Action.EXPORT_REGULATOR)
        self._log(actor, "export.regulator")
        orders = [status.as_dict() for status in self.orders.status_all(actor)]
        checkpoint, public_key = self._checkpoint()
        with self.parts.db.read() as session:
            facts = gather(self.parts, self.now(), session)
            return build(session, self.parts.audit, facts, read_benchmark(self.parts.model_id, self.benchmarks),
                         generated_by=actor.name, orders=orders, checkpoint=checkpoint, public_key=public_key)

    def _checkpoint(self) -> tuple[Checkpoint | None, str | None]:
        """The newest checkpoint kept here that the configured key signed, and that key's public text; none
        without a key or a checkpoint (the export says so, and is made all the same)."""
        verifier = self.checkpoints.verifier()
        if verifier is None:
            return None, None
        try:
            return self.checkpoints.latest_verified(), verifier.text()
        except NotFoundError:
            return None, verifier.text()

    def _log(self, actor: Actor, action: str) -> None:
        with self.parts.db.write() as session, session.begin():
            self.parts.audit.record(session, actor=actor.name, action=action, details={})
