"""URL-list sources against a real HTTP server on 127.0.0.1: only the listed URLs are fetched, politely and within
bounds, and what is fetched is ingested with its URL and fetch time as provenance."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from typer.testing import CliRunner

from facetrail import __version__
from facetrail.cli.main import app
from facetrail.errors import FetchError, InvalidValueError
from facetrail.rights.access import collect, render_html
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.fetch import Fetcher, FetchPolicy
from facetrail.sources.urls import read_url_list
from facetrail.store.models import StoredImage
from tests.conftest import add_source, sample_bytes
from tests.sources.site import Page, Site, certificate, serving

CONTACT = "https://club.example/about-our-fetcher"
LOCAL = "127.0.0.1/32"


@pytest.fixture
def site() -> Iterator[Site]:
    with serving() as running:
        running.pages["/robots.txt"] = Page(b"User-agent: *\nDisallow: /private/\n", content_type="text/plain")
        running.pages["/photos/obama.jpg"] = Page(sample_bytes("obama_small.jpg"))
        running.pages["/photos/biden.jpg"] = Page(sample_bytes("biden.jpg"))
        running.pages["/private/rose.jpg"] = Page(sample_bytes("rose_leslie1.jpg"))
        running.pages["/page.html"] = Page(b'<html><a href="/linked.html">more</a><img src="/photos/linked.jpg">'
                                           b"</html>", content_type="text/html; charset=utf-8")
        yield running


def open_url_ft(data: Path, **settings: object) -> Facetrail:
    """A data directory that may fetch from 127.0.0.1 (and only that private address), without delay."""
    return Facetrail.open(data, create=True, workers=1, fetch_contact=CONTACT, fetch_allow_networks=[LOCAL],
                          fetch_delay_s=0, **settings)


@pytest.fixture
def url_ft(tmp_path: Path) -> Iterator[Facetrail]:
    instance = open_url_ft(tmp_path / "data")
    yield instance
    instance.close()


def local_fetcher(**policy: object) -> Fetcher:
    """A fetcher that may fetch from 127.0.0.1, without delay unless told."""
    values: dict[str, object] = {"user_agent": f"facetrail/test (+{CONTACT})", "delay_s": 0,
                                 "allowed_networks": (ipaddress.ip_network(LOCAL),)}
    return Fetcher(FetchPolicy(**(values | policy)))  # type: ignore[arg-type]  # the policy's own fields


def ingest_urls(ft: Facetrail, urls: list[str]) -> tuple[int, dict[str, object]]:
    source_id = add_source(ft, name="web")
    ft.sources.declare_urls(local_actor(), source_id, urls)
    report = ft.ingest.ingest(local_actor(), source_id, ft.url_items(local_actor(), source_id))
    return source_id, report.as_dict()


def errors_by_name(report: dict[str, object]) -> dict[str, str]:
    return {e["name"]: e["cause"] for e in report["errors"]}  # type: ignore[attr-defined,index]


# -- acceptance -------------------------------------------------------------------------------------------------

def test_listed_images_are_ingested_with_url_and_fetch_time_as_provenance(url_ft: Facetrail, site: Site) -> None:
    listed = [site.url("/photos/obama.jpg"), site.url("/photos/biden.jpg")]
    before = datetime.now(UTC)
    source_id, report = ingest_urls(url_ft, listed)
    assert report["images_added"] == 2 and report["errors"] == [], report
    with url_ft.db.read() as session:
        images = list(session.scalars(select(StoredImage).options(selectinload(StoredImage.faces))
                                      .order_by(StoredImage.id)))
    assert [i.original_name for i in images] == listed and [i.origin_url for i in images] == listed
    assert all(i.fetched_at is not None and before <= i.fetched_at <= datetime.now(UTC) for i in images)
    assert sorted(site.paths()) == ["/photos/biden.jpg", "/photos/obama.jpg", "/robots.txt"]
    assert {r.user_agent for r in site.requests} == {f"facetrail/{__version__} (+{CONTACT})"}
    # The person's access package says where their photo was fetched from, and when.
    package = collect(url_ft.db, [face.id for image in images for face in image.faces]).data
    assert {f["fetched_from"] for f in package["faces"]} == set(listed)
    assert all(f["fetched_at"].endswith("Z") for f in package["faces"])
    package |= {"request": {"id": "r-1"}, "images": len(images)}  # what build_package adds for the request
    assert f"Fetched from {listed[0]} on " in render_html(package)
    # The same list again: fetched again (the content could have changed), nothing added.
    again = url_ft.ingest.ingest(local_actor(), source_id, url_ft.url_items(local_actor(), source_id))
    assert again.images_added == 0 and again.images_skipped == 2 and not again.errors


def test_robots_disallow_links_and_refusals_are_per_url_errors_and_the_batch_goes_on(
        tmp_path: Path, site: Site) -> None:
    site.pages["/big.jpg"] = Page(sample_bytes("obama2.jpg"))
    site.pages["/to-metadata"] = Page(status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"})
    listed = [site.url("/private/rose.jpg"), site.url("/page.html"), site.url("/photos/obama.jpg"),
              site.url("/missing.jpg"), site.url("/to-metadata")]
    with closing(open_url_ft(tmp_path / "data", fetch_max_bytes=100_000)) as ft:
        _, report = ingest_urls(ft, [*listed, site.url("/big.jpg")])
    errors = errors_by_name(report)
    assert report["images_added"] == 1 and set(errors) == {*listed, site.url("/big.jpg")} - {listed[2]}
    assert errors[listed[0]].startswith("disallowed by robots.txt")
    assert errors[listed[1]].startswith("not an image or video (Content-Type text/html)")
    assert errors[listed[3]] == "HTTP 404 Not Found"
    assert errors[listed[4]].startswith(
        "redirected to http://169.254.169.254/latest/meta-data/: refused address: 169.254.169.254 resolves to "
        "169.254.169.254 (link-local)")
    assert errors[site.url("/big.jpg")].startswith("too large")
    paths = site.paths()
    assert "/private/rose.jpg" not in paths, "a URL robots.txt disallows is never requested"
    assert not {"/linked.html", "/photos/linked.jpg"} & set(paths), "a link on a fetched page is never followed"
    assert paths.count("/robots.txt") == 1, "robots.txt is fetched once per host and run"


def test_a_sitemap_file_lists_the_urls(url_ft: Facetrail, site: Site, tmp_path: Path) -> None:
    sitemap = tmp_path / "sitemap.xml"
    sitemap.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1">\n'
        f"  <url><loc>{site.url('/photos/obama.jpg')}</loc></url>\n"
        f"  <url><loc>{site.url('/page.html')}</loc>\n"
        f"    <image:image><image:loc>{site.url('/photos/biden.jpg')}</image:loc></image:image></url>\n"
        "</urlset>\n")
    urls = read_url_list(sitemap)
    assert urls == (site.url("/photos/obama.jpg"), site.url("/photos/biden.jpg"))
    _, report = ingest_urls(url_ft, list(urls))
    assert report["images_added"] == 2 and not report["errors"]
    assert "/page.html" not in site.paths(), "an image sitemap's page is not fetched, only its images"


def test_a_redirect_to_a_loopback_address_is_refused(site: Site) -> None:
    site.pages["/moved.jpg"] = Page(status=301, headers={"Location": "/photos/obama.jpg"})
    site.pages["/elsewhere.jpg"] = Page(status=302, headers={"Location": site.url("/photos/biden.jpg", "127.0.0.2")})
    fetched = local_fetcher().fetch(site.url("/moved.jpg"))
    assert fetched.final_url == site.url("/photos/obama.jpg") and fetched.data == sample_bytes("obama_small.jpg")
    with pytest.raises(FetchError, match=r"redirected to http://127\.0\.0\.2:\d+/photos/biden\.jpg: refused address"
                                         r".*\(loopback\)"):
        local_fetcher().fetch(site.url("/elsewhere.jpg"))
    assert "/photos/biden.jpg" not in site.paths()


def test_a_listed_loopback_url_is_refused_by_default(site: Site) -> None:
    with pytest.raises(FetchError, match=r"refused address: 127\.0\.0\.1 resolves to 127\.0\.0\.1 \(loopback\)"):
        local_fetcher(allowed_networks=()).fetch(site.url("/photos/obama.jpg"))
    assert site.requests == [], "nothing is requested from a refused address, not even robots.txt"


def test_the_cli_declares_the_urls_with_the_source_and_ingests_them(site: Site, tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# our own club photos\n{site.url('/photos/obama.jpg')}\n\n{site.url('/private/rose.jpg')}\n")
    env = {"FACETRAIL_FETCH_CONTACT": CONTACT, "FACETRAIL_FETCH_ALLOW_NETWORKS": json.dumps([LOCAL]),
           "FACETRAIL_FETCH_DELAY_S": "0"}
    runner = CliRunner(env=env)
    data = str(tmp_path / "data")
    assert runner.invoke(app, ["init", "--data", data, "--json"]).exit_code == 0
    source = ["--data", data, "source", "add", "--name", "club web", "--controller", "Club", "--purpose",
              "find-my-photos", "--basis", "consent", "--art9", "a", "--evidence", "forms/2026", "--jurisdiction",
              "FR", "--retention-days", "365", "--json", "--urls"]
    bad = tmp_path / "bad.txt"
    bad.write_text("gopher://club.example/a.jpg\n")
    refused = runner.invoke(app, [*source, str(bad)])
    assert refused.exit_code == 2 and "bad.txt, line 1: " in json.loads(refused.output)["detail"]
    assert json.loads(runner.invoke(app, ["--data", data, "source", "list", "--json"]).output) == []
    added = runner.invoke(app, [*source, str(listing)])
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["urls"] == {"added": 2, "already": 0}
    listed = json.loads(runner.invoke(app, ["--data", data, "source", "urls", "1", "--json"]).output)
    assert [u["url"] for u in listed] == [site.url("/photos/obama.jpg"), site.url("/private/rose.jpg")]
    assert listed[0]["declared_at"].endswith("Z") and listed[0]["declared_by"].startswith("local:")
    result = runner.invoke(app, ["--data", data, "ingest-urls", "--source", "1", "--workers", "1", "--json"])
    report = json.loads(result.output)
    assert result.exit_code == 3 and report["images_added"] == 1, result.output  # partial: robots.txt said no
    assert report["errors"][0]["name"] == site.url("/private/rose.jpg")
    audit = json.loads(runner.invoke(app, ["--data", data, "audit", "list", "--json"]).output)
    assert [e["action"] for e in audit] == ["data.create", "source.add", "source.urls", "ingest.start",
                                            "ingest.finish"]
    assert json.loads(audit[2]["details"])["added"] == 2  # the entry's details as chained: canonical JSON


# -- the fetcher's limits ---------------------------------------------------------------------------------------

def test_a_streamed_response_is_abandoned_at_the_size_limit(site: Site) -> None:
    site.pages["/stream.jpg"] = Page(sample_bytes("obama2.jpg"), announce_length=False)
    with pytest.raises(FetchError, match="too large: more than 50000 bytes"):
        local_fetcher(max_bytes=50_000).fetch(site.url("/stream.jpg"))
    assert local_fetcher().fetch(site.url("/stream.jpg")).data == sample_bytes("obama2.jpg")


def test_robots_txt_that_fails_disallows_and_one_that_is_missing_allows(site: Site) -> None:
    site.pages["/robots.txt"] = Page(b"down", status=503, content_type="text/plain")
    with pytest.raises(FetchError, match="robots.txt answered HTTP 503: everything is disallowed"):
        local_fetcher().fetch(site.url("/photos/obama.jpg"))
    del site.pages["/robots.txt"]  # a 404 now: no rules
    assert local_fetcher().fetch(site.url("/photos/obama.jpg")).data == sample_bytes("obama_small.jpg")


@pytest.mark.parametrize("delay_s,robots,spacing", [
    (0.3, b"User-agent: *\nDisallow: /private/\n", 0.3),
    (0.0, b"User-agent: facetrail\nCrawl-delay: 0.4\n", 0.4),  # the site's longer Crawl-delay wins
])
def test_requests_to_one_host_are_spaced_by_the_delay(site: Site, delay_s: float, robots: bytes,
                                                       spacing: float) -> None:
    site.pages["/robots.txt"] = Page(robots, content_type="text/plain")
    fetch = local_fetcher(delay_s=delay_s)
    fetch.fetch(site.url("/photos/obama.jpg"))
    fetch.fetch(site.url("/photos/biden.jpg"))
    # robots.txt, then the two images: the delay runs from the end of one request, after the server saw it.
    times = [r.at for r in site.requests]
    assert len(times) == 3 and all(b - a >= spacing for a, b in zip(times, times[1:], strict=False))


def to_localhost(name: str) -> Any:
    """A resolver that answers 127.0.0.1 for `name` (and knows no other name)."""
    def resolver(host: str, port: int, **_kwargs: object) -> list[tuple[Any, ...]]:
        assert host == name
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
    return resolver


def test_the_connection_goes_to_the_checked_address_and_names_the_host(site: Site) -> None:
    fetch = Fetcher(FetchPolicy(user_agent="facetrail/test", delay_s=0,
                                allowed_networks=(ipaddress.ip_network(LOCAL),)), resolver=to_localhost("club.test"))
    assert fetch.fetch(site.url("/photos/obama.jpg", "club.test")).data == sample_bytes("obama_small.jpg")
    assert {r.host for r in site.requests} == {f"club.test:{site.port}"}


def test_https_is_verified_against_the_name_while_connecting_to_the_checked_address(tmp_path: Path) -> None:
    server_tls, client_tls = certificate("club.test", tmp_path)
    with serving(server_tls) as secure:
        secure.pages["/photos/obama.jpg"] = Page(sample_bytes("obama_small.jpg"))
        policy = FetchPolicy(user_agent="facetrail/test", delay_s=0, allowed_networks=(ipaddress.ip_network(LOCAL),))
        fetch = Fetcher(policy, resolver=to_localhost("club.test"), tls=client_tls)
        assert fetch.fetch(secure.url("/photos/obama.jpg", "club.test", "https")).data == sample_bytes(
            "obama_small.jpg")
        with pytest.raises(FetchError, match="TLS error"):  # the certificate names club.test, not 127.0.0.1
            Fetcher(policy, tls=client_tls).fetch(secure.url("/photos/obama.jpg", scheme="https"))


def test_a_slow_answer_times_out(site: Site) -> None:
    site.pages["/slow.jpg"] = Page(sample_bytes("obama_small.jpg"), delay_s=1.5)
    with pytest.raises(FetchError, match="timed out"):
        local_fetcher(timeout_s=0.5).fetch(site.url("/slow.jpg"))


def test_redirect_loops_end(site: Site) -> None:
    site.pages["/loop.jpg"] = Page(status=302, headers={"Location": "/loop.jpg"})
    with pytest.raises(FetchError, match="more than 2 redirects"):
        local_fetcher(max_redirects=2).fetch(site.url("/loop.jpg"))
    assert site.paths().count("/loop.jpg") == 3


def test_fetching_needs_a_contact(tmp_path: Path) -> None:
    with closing(Facetrail.open(tmp_path / "data", create=True, workers=1)) as ft, \
            pytest.raises(InvalidValueError) as caught:
        FetchPolicy.from_settings(ft.settings)
    assert caught.value.field == "fetch_contact"


# -- the lists --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("line,cause", [
    ("ftp://files.example/a.jpg", "only http and https"),
    ("https://user:secret@club.example/a.jpg", "credentials"),
    ("/photos/a.jpg", "only http and https"),
    ("https://club.example/a photo.jpg", "percent-encoded"),
])
def test_a_bad_line_of_a_text_list_is_named(tmp_path: Path, line: str, cause: str) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"https://club.example/ok.jpg\n# a comment\n{line}\n")
    with pytest.raises(InvalidValueError, match=f"urls.txt, line 3: .*{cause}"):
        read_url_list(listing)


def test_a_sitemap_index_is_refused_not_followed(tmp_path: Path) -> None:
    index = tmp_path / "index.xml"
    index.write_text('<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><sitemap>'
                     "<loc>https://club.example/sitemap-1.xml</loc></sitemap></sitemapindex>")
    with pytest.raises(InvalidValueError, match="a sitemap index points to other sitemaps"):
        read_url_list(index)
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<!DOCTYPE urlset [<!ENTITY a "aaaa">]><urlset><url><loc>&a;</loc></url></urlset>')
    with pytest.raises(InvalidValueError, match="DOCTYPE or ENTITY"):
        read_url_list(bomb)


def test_declared_urls_are_deduplicated_and_audited(ft: Facetrail) -> None:
    source_id = add_source(ft)
    first = ft.sources.declare_urls(local_actor(), source_id, ["https://club.example/a.jpg#top",
                                                              "HTTPS://Club.Example/a.jpg"])
    second = ft.sources.declare_urls(local_actor(), source_id, ["https://club.example/a.jpg",
                                                               "https://club.example/b.jpg"])
    assert (first.added, second.added, second.already) == (1, 1, 1)
    assert [u.url for u in ft.sources.urls(local_actor(), source_id)] == ["https://club.example/a.jpg",
                                                                          "https://club.example/b.jpg"]
    with pytest.raises(InvalidValueError, match="only http and https"):
        ft.sources.declare_urls(local_actor(), source_id, ["file:///etc/passwd"])
