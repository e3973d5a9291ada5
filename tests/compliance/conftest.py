"""A store with data of two jurisdictions: a source declared for France, and one declared for Germany that
holds a photo taken in Paris (French by its EXIF GPS) and one taken in Berlin."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Face, StoredImage
from tests.compliance.gps import BERLIN, PARIS, with_gps
from tests.conftest import PG_TEMPLATE, SAMPLES, StoreDb
from tests.pg import Cluster

FR_PHOTOS = ("obama.jpg", "biden.jpg", "kit_harington1.jpeg")
DE_PHOTOS = ("two_people.jpg", "rose_leslie1.jpg", "alex_lacamoire1.jpg")
TAKEN_IN_PARIS = "paris.jpg"  # obama3.jpg with French GPS tags, in the German source
TAKEN_IN_BERLIN = "berlin.jpg"  # kit_harington3.jpg with German GPS tags, in the German source
PG_JURISDICTIONS = "facetrail_jurisdictions"  # the store's database on PostgreSQL (copied with its directory)


@dataclass(frozen=True)
class JurisdictionStore:
    data: Path
    fr_source: int
    de_source: int


def add_declared_source(ft: Facetrail, name: str, jurisdictions: list[str], retention_days: int = 365) -> int:
    return ft.sources.add(local_actor(), name=name, controller="Test Controller", purposes=["demo"],
                          legal_basis="consent", art9_condition="a", evidence_ref="consent-records/2",
                          jurisdictions=jurisdictions, retention_days=retention_days).id


def image_ids(ft: Facetrail, *names: str) -> list[int]:
    """Ids of the stored images whose file has one of these names."""
    with ft.db.read() as session:
        rows = session.execute(select(StoredImage.id, StoredImage.original_name)).all()
    return sorted(i for i, original in rows if Path(original).name in names)


def face_ids(ft: Facetrail, *names: str) -> list[int]:
    wanted = image_ids(ft, *names)
    with ft.db.read() as session:
        return sorted(session.scalars(select(Face.id).where(Face.image_id.in_(wanted))))


@pytest.fixture(scope="session")
def jurisdiction_store(tmp_path_factory: pytest.TempPathFactory, pg_cluster: Cluster | None) -> JurisdictionStore:
    root = tmp_path_factory.mktemp("jurisdictions")
    (root / TAKEN_IN_PARIS).write_bytes(with_gps("obama3.jpg", PARIS))
    (root / TAKEN_IN_BERLIN).write_bytes(with_gps("kit_harington3.jpg", BERLIN))
    url = None if pg_cluster is None else pg_cluster.create(PG_JURISDICTIONS, PG_TEMPLATE)
    ft = Facetrail.open(root / "data", create=True, workers=1, db_url=url)
    actor = local_actor()
    fr = add_declared_source(ft, "fr-club", ["FR"])
    de = add_declared_source(ft, "de-archive", ["DE"])
    for source, paths in ((fr, [SAMPLES / n for n in FR_PHOTOS]),
                          (de, [*(SAMPLES / n for n in DE_PHOTOS), root / TAKEN_IN_PARIS, root / TAKEN_IN_BERLIN])):
        report = ft.ingest.ingest(actor, source, from_paths(paths, ft.input_limits), workers=1)
        assert not report.errors and report.images_added == len(paths), report
    ft.close()
    return JurisdictionStore(root / "data", fr, de)


@pytest.fixture
def jft(jurisdiction_store: JurisdictionStore, tmp_path: Path, store_db: StoreDb) -> Iterator[Facetrail]:
    """A private copy of the jurisdiction store, opened (workers=1, erasure jobs in batches of 2 images)."""
    data = tmp_path / "data"
    shutil.copytree(jurisdiction_store.data, data)
    store_db.copy_from(PG_JURISDICTIONS)
    instance = Facetrail.open(data, workers=1, erasure_batch=2)
    yield instance
    instance.close()
