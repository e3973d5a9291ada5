"""The console's search results beyond the crops: the full image with the face outlined, under the crop's own
check and audited, and what the result filters work on."""

from __future__ import annotations

import io
import re

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from facetrail.api import create_app
from facetrail.runtime import Facetrail
from facetrail.store.models import Face
from tests.conftest import sample_bytes
from tests.web.staff import audit_entries, console_search, sign_in, staff

IMAGE_LINK = re.compile(r'href="(/console/searches/([0-9a-f]+)/faces/(\d+))"')


def test_the_full_image_outlines_the_face_for_the_searcher_alone_and_is_audited(samples_ft: Facetrail) -> None:
    staff(samples_ft, "ivan", "investigator")
    staff(samples_ft, "olga", "investigator")
    with TestClient(create_app(samples_ft)) as ivan, TestClient(create_app(samples_ft)) as olga:
        sign_in(ivan, "ivan")
        result = console_search(ivan, sample_bytes("obama2.jpg"))
        links = IMAGE_LINK.findall(result.text)
        assert len(links) >= 4, result.text
        url, search_id, face_id = links[0]
        page = ivan.get(url)
        assert page.status_code == 200 and f'src="{url}/image"' in page.text
        shown = ivan.get(f"{url}/image")
        assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
        assert shown.headers["cache-control"] == "no-store"
        with samples_ft.db.read() as session:
            face = session.get(Face, int(face_id))
            assert face is not None
            box = (face.box_left, face.box_top, face.box_right, face.box_bottom)
        picture = Image.open(io.BytesIO(shown.content)).convert("RGB")
        # The outline is amber on the box's edge; the face's middle is untouched skin.
        r, g, b = picture.getpixel((box[0] + 1, (box[1] + box[3]) // 2))  # type: ignore[misc]
        assert r > 200 and 150 < g < 235 and b < 80, (r, g, b)
        r, g, b = picture.getpixel(((box[0] + box[2]) // 2, (box[1] + box[3]) // 2))  # type: ignore[misc]
        assert not (r > 200 and 150 < g < 235 and b < 80)
        assert audit_entries(samples_ft, "search.image") == [
            ("ivan", "search.image", {"search_id": search_id, "face_id": int(face_id), "image_id": face.image_id})]
        # A face this search did not return, another account, no such search: refused, nothing drawn.
        returned = {int(f) for _, _, f in links}
        with samples_ft.db.read() as session:
            other = session.scalar(select(Face.id).where(Face.id.not_in(returned)).limit(1))
        assert ivan.get(f"/console/searches/{search_id}/faces/{other}/image").status_code == 404
        assert ivan.get(f"/console/searches/{search_id}/faces/{other}").status_code == 404
        sign_in(olga, "olga")
        assert olga.get(url).status_code == 403 and olga.get(f"{url}/image").status_code == 403
        assert olga.get(f"/console/searches/{'0' * 32}/faces/{face_id}/image").status_code == 404
    assert len(audit_entries(samples_ft, "search.image")) == 1
    assert audit_entries(samples_ft, "auth.denied")[-1][0] == "olga"


def test_each_result_carries_what_the_filters_work_on(samples_ft: Facetrail) -> None:
    staff(samples_ft, "ivan", "investigator")
    with TestClient(create_app(samples_ft)) as ivan:
        sign_in(ivan, "ivan")
        result = console_search(ivan, sample_bytes("obama2.jpg")).text
    assert '<form id="result-filters" class="filters" hidden>' in result  # shown by the script only
    items = re.findall(r'data-source="([^"]+)" data-date="(\d{4}-\d{2}-\d{2})"', result)
    assert items and {source for source, _ in items} == {"samples"}
    assert "<option>samples</option>" in result
    # Each result: its band per comparison and what it means at the number of faces searched.
    with samples_ft.db.read() as session:
        faces = session.scalar(select(func.count(Face.id)))
    assert f"automatic threshold, {faces:,} faces searched" in result
    rates = re.findall(r'<dd class="rates">(1 in [\d,]+) per comparison;\s+([^<]+) of searches at this size</dd>',
                       result)
    assert rates and len(rates) == len(items)
