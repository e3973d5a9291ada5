"""Jurisdiction per image: EXIF GPS read safely, reverse-geocoded offline on the sphere, and recorded beside
the source's declared jurisdictions (also for images stored before this was recorded)."""

from __future__ import annotations

import io
import json
import math
import sqlite3
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from facetrail.media.exif import PNG_MAX_CHUNKS, GeoPoint, gps_position
from facetrail.policy.geocode import OfflineGeocoder
from facetrail.policy.jurisdiction import Basis, Jurisdiction, JurisdictionResolver
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.db import Database
from tests.compliance.conftest import JurisdictionStore
from tests.compliance.gps import BERLIN, PARIS, png_chunk, png_chunks, with_gps
from tests.conftest import migrated_to, sample_bytes

GEOCODER = OfflineGeocoder()


def test_the_position_written_with_pillow_is_read_back() -> None:
    point = gps_position(with_gps("obama2.jpg", PARIS))
    assert point is not None and point.latitude == pytest.approx(PARIS[0], abs=1e-4)
    assert point.longitude == pytest.approx(PARIS[1], abs=1e-4)
    south_west = gps_position(with_gps("obama2.jpg", (-22.9068, -43.1729)))
    assert south_west is not None and south_west.latitude < 0 and south_west.longitude < 0


@pytest.mark.parametrize("data", [sample_bytes("obama.jpg"), b"", b"not an image at all",
                                  with_gps("obama2.jpg", (0.0, 0.0)), with_gps("obama2.jpg", PARIS)[:300]])
def test_no_position_absent_null_island_or_broken_metadata(data: bytes) -> None:
    assert gps_position(data) is None


def test_a_png_without_exif_has_no_position() -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    assert gps_position(out.getvalue()) is None


def test_a_pngs_position_is_read_wherever_its_exif_chunk_is_without_decoding_its_pixels() -> None:
    png = with_gps("obama_small.jpg", PARIS, "PNG")
    chunks = png_chunks(png)
    assert [c[4:8] for c in chunks].index(b"eXIf") < [c[4:8] for c in chunks].index(b"IDAT")
    exif = next(c for c in chunks if c[4:8] == b"eXIf")
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    after_pixels = png[:8] + b"".join([*rest[:-1], exif, rest[-1]])  # before IEND, which the PNG standard allows
    # Pixel data that cannot be decoded: the position is read all the same, so the pixels were never decoded
    # (Pillow decodes the whole image to find an eXIf chunk that follows them).
    broken = png[:8] + b"".join(c if c[4:8] != b"IDAT" else c[:8] + bytes(len(c) - 8) for c in [*rest[:-1], exif,
                                                                                                 rest[-1]])
    for data in (png, after_pixels, broken):
        point = gps_position(data)
        assert point is not None and math.isclose(point.latitude, PARIS[0], abs_tol=1e-4)
        assert math.isclose(point.longitude, PARIS[1], abs_tol=1e-4)
    with pytest.raises(Exception):  # noqa: B017,PT011  # Pillow's own read of the broken one fails
        Image.open(io.BytesIO(broken)).getexif()
    truncated = png[:8] + b"".join(rest[:-1]) + exif[:20]
    assert gps_position(truncated) is None


def test_the_walk_through_a_pngs_chunks_is_bounded() -> None:
    png = with_gps("obama_small.jpg", PARIS, "PNG")
    chunks = png_chunks(png)
    exif_at = [c[4:8] for c in chunks].index(b"eXIf") + 1  # its number among the chunks, from 1
    blank = png_chunk(b"tEXt", b"")  # a well-formed chunk (its CRC right) of no data

    def padded(before_exif: int) -> bytes:
        """The PNG with blank chunks after its header, so that its eXIf chunk is the `before_exif` + 1-th."""
        return png[:8] + chunks[0] + blank * (before_exif - exif_at + 1) + b"".join(chunks[1:])

    assert gps_position(padded(1_000)) is not None
    assert gps_position(padded(PNG_MAX_CHUNKS - 1)) is not None  # the last chunk walked
    assert gps_position(padded(PNG_MAX_CHUNKS)) is None  # the first one beyond the walk


def test_a_png_as_pillow_reads_it_the_last_intact_exif_chunk_or_exif_in_a_text_chunk() -> None:
    paris, berlin = (with_gps("obama_small.jpg", point, "PNG") for point in (PARIS, BERLIN))
    chunks = png_chunks(paris)
    in_paris = next(c for c in chunks if c[4:8] == b"eXIf")
    in_berlin = next(c for c in png_chunks(berlin) if c[4:8] == b"eXIf")
    rest = [c for c in chunks if c[4:8] != b"eXIf"]

    def with_chunks(*extra: bytes) -> bytes:
        return paris[:8] + b"".join([*rest[:-1], *extra, rest[-1]])

    def latitude(data: bytes) -> float | None:
        point = gps_position(data)
        return None if point is None else round(point.latitude, 3)

    assert latitude(with_chunks(in_paris, in_berlin)) == round(BERLIN[0], 3)  # the last one
    broken = in_berlin[:-4] + bytes(b ^ 0xFF for b in in_berlin[-4:])  # its CRC wrong
    assert latitude(with_chunks(in_paris, broken)) == round(PARIS[0], 3)
    assert latitude(with_chunks(broken)) is None
    # EXIF in a text chunk (as ImageMagick and ExifTool write it), read as Pillow reads it.
    raw = Image.open(io.BytesIO(paris)).getexif().tobytes()
    profile = "\nexif\n" + f"{len(raw):8d}\n" + "\n".join(raw.hex()[i:i + 72] for i in range(0, len(raw) * 2, 72))
    text = png_chunk(b"tEXt", b"Raw profile type exif\x00" + profile.encode("latin-1"))
    assert latitude(with_chunks(text)) == round(PARIS[0], 3)
    assert latitude(with_chunks(text, in_berlin)) == round(BERLIN[0], 3)  # an eXIf chunk comes first, as in Pillow


@pytest.mark.parametrize("point,country", [(PARIS, "FR"), (BERLIN, "DE"), ((40.7128, -74.0060), "US"),
                                           ((50.8467, 4.3525), "BE"), ((43.7384, 7.4246), "MC"),
                                           # Across the 180th meridian, where distances in raw degrees mislead.
                                           ((-16.79, -179.98), "FJ"), ((-16.79, 179.99), "FJ"),
                                           ((45.0, -30.0), None)])  # mid-Atlantic: no country
def test_offline_reverse_geocoding(point: tuple[float, float], country: str | None) -> None:
    assert GEOCODER.country(GeoPoint(*point)) == country


def test_declared_jurisdictions_come_first_then_the_gps_country() -> None:
    resolver = JurisdictionResolver(GEOCODER)
    assert resolver.of_image(["DE"], with_gps("obama2.jpg", PARIS)) == (
        Jurisdiction("DE", Basis.SOURCE_DECLARED), Jurisdiction("FR", Basis.EXIF_GPS))
    assert resolver.of_image(["DE", "AT"], sample_bytes("obama.jpg")) == (
        Jurisdiction("DE", Basis.SOURCE_DECLARED), Jurisdiction("AT", Basis.SOURCE_DECLARED))


def test_a_missing_place_file_is_an_error_not_a_download(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        OfflineGeocoder(tmp_path / "absent.gz").country(GeoPoint(*PARIS))


def test_images_stored_before_get_their_sources_declared_jurisdictions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = Database(f"sqlite:///{path}")
    migrated_to(db.engine, "0005")
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO sources (id, name, controller, purposes, legal_basis, art9_condition, evidence_ref, "
                 "jurisdictions, retention_days, description, created_at, created_by) VALUES (1, 's', 'c', "
                 "'[\"demo\"]', 'consent', 'a', 'e', '[\"FR\", \"BE\"]', 30, '', '2026-01-01', 'x')")
    conn.execute("INSERT INTO images (id, source_id, sha256, original_name, size_bytes, width, height, format, "
                 "face_count, ingested_at) VALUES (7, 1, 'ab', 'a.jpg', 1, 1, 1, 'JPEG', 0, '2026-01-01')")
    conn.commit()
    conn.close()
    db.migrate()
    db.dispose()
    conn = sqlite3.connect(path)
    assert sorted(conn.execute("SELECT image_id, code, basis FROM image_jurisdictions")) == [
        (7, "BE", "source-declared"), (7, "FR", "source-declared")]
    conn.close()


def test_the_access_package_tells_the_person_how_each_jurisdiction_was_decided(
        jft: Facetrail, jurisdiction_store: JurisdictionStore, tmp_path: Path) -> None:
    from tests.rights.captures import BUSH_HELD, photo
    from tests.rights.test_requests import full_request

    # The requester (Bush, who passes the live check) is held twice: in the French source, and in the German
    # one in a photo taken in Paris.
    taken_in_paris = tmp_path / "bush-in-paris.jpg"
    taken_in_paris.write_bytes(with_gps(photo(BUSH_HELD[0]), PARIS))
    for source, path in ((jurisdiction_store.fr_source, photo(BUSH_HELD[1])),
                         (jurisdiction_store.de_source, taken_in_paris)):
        report = jft.ingest.ingest(local_actor(), source, from_paths([path], jft.input_limits), workers=1)
        assert report.faces_added == 1, report
    request_id, token = full_request(jft, "access")
    status = jft.requests.status(request_id, token)
    package = jft.requests.download(request_id, status.answer["download"].split("token=")[1])
    archive = zipfile.ZipFile(io.BytesIO(package))
    faces = json.loads(archive.read("data.json"))["faces"]
    decided = {Path(f["original_name"]).name: f["jurisdictions"] for f in faces}
    assert decided["bush-in-paris.jpg"] == [{"code": "DE", "basis": "source-declared"},
                                            {"code": "FR", "basis": "exif-gps"}]
    assert decided[BUSH_HELD[1]] == [{"code": "FR", "basis": "source-declared"}]
    page = archive.read("index.html").decode()
    assert "FR (where the photo was taken, from its GPS data)" in page
