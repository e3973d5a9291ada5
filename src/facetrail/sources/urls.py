"""URL-list sources (hard rule 1): the explicit http(s) addresses a controller declares it is entitled to.

A list is a local file: plain text, one URL a line (blank lines and `#` comments ignored), or a sitemap
(`<urlset>`; in an image sitemap the `<image:loc>` of an entry are taken instead of its page). Nothing here
discovers an address: a sitemap index (`<sitemapindex>`, which points to other sitemaps) is refused, no sitemap
is ever downloaded, and a fetched page is never read for links (sources/fetch.py). The items a list yields fetch
exactly the URLs declared on the source, one each, when the ingestion reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit
from xml.etree import ElementTree

from facetrail.errors import InvalidValueError
from facetrail.sources.fetch import Fetcher
from facetrail.sources.inputs import InputItem, Origin

MAX_URL_LENGTH = 2000
MAX_LIST_BYTES = 50 * 1024 * 1024  # the sitemap protocol's own limit for one file
MAX_LIST_URLS = 100_000
SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
IMAGE_NS = "{http://www.google.com/schemas/sitemap-image/1.1}"
_DECLARATIONS = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def validate_url(url: str) -> str:
    """An absolute http(s) URL, without credentials or fragment (a fragment is dropped: it is never sent).
    Raise InvalidValueError("url", ...) saying what is wrong."""
    text = url.strip() if isinstance(url, str) else ""
    if not text:
        raise InvalidValueError("url", "is empty")
    if len(text) > MAX_URL_LENGTH:
        raise InvalidValueError("url", f"{text[:80]}...: longer than {MAX_URL_LENGTH} characters")
    if not text.isascii() or any(c.isspace() or ord(c) < 32 for c in text):
        raise InvalidValueError("url", f"{text!r}: spaces and non-ASCII characters must be percent-encoded")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise InvalidValueError("url", f"{text!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidValueError("url", f"{text!r}: only http and https URLs can be listed")
    if not parts.hostname:
        raise InvalidValueError("url", f"{text!r}: no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidValueError("url", f"{text!r}: credentials in a URL are refused (they would be stored)")
    if port == 0:
        raise InvalidValueError("url", f"{text!r}: port 0")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", parts.query, ""))


def read_url_list(path: Path) -> tuple[str, ...]:
    """The URLs listed in a local text file or sitemap, validated, duplicates removed, in file order.
    Raise InvalidValueError naming the file (and the line of a text list) and the cause."""
    try:
        size = path.stat().st_size
        if size > MAX_LIST_BYTES:
            raise InvalidValueError("urls", f"{path}: {size} bytes; a list is at most {MAX_LIST_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidValueError("urls", f"{path}: {exc.strerror or exc}") from None
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        urls = _sitemap_urls(path, data)
    else:
        urls = _text_urls(path, data)
    if not urls:
        raise InvalidValueError("urls", f"{path}: lists no URL")
    if len(urls) > MAX_LIST_URLS:
        raise InvalidValueError("urls", f"{path}: {len(urls)} URLs; a list holds at most {MAX_LIST_URLS}")
    return tuple(dict.fromkeys(urls))


def _text_urls(path: Path, data: bytes) -> list[str]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidValueError("urls", f"{path}: not UTF-8 text, and not a sitemap") from None
    urls = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        try:
            urls.append(validate_url(entry))
        except InvalidValueError as exc:
            raise InvalidValueError("urls", f"{path}, line {number}: {exc.message}") from None
    return urls


def _sitemap_urls(path: Path, data: bytes) -> list[str]:
    if _DECLARATIONS.search(data):
        # Entity declarations are how XML bombs and external-entity reads work; a sitemap needs none.
        raise InvalidValueError("urls", f"{path}: a sitemap with a DOCTYPE or ENTITY declaration is refused")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise InvalidValueError("urls", f"{path}: not a well-formed sitemap ({exc})") from None
    tag = _local(root.tag)
    if tag == "sitemapindex":
        raise InvalidValueError("urls", f"{path}: a sitemap index points to other sitemaps, which facetrail never "
                                "fetches (it discovers no URL): give the sitemap files themselves, as local files")
    if tag != "urlset":
        raise InvalidValueError("urls", f"{path}: the root element is <{tag}>, not a sitemap's <urlset>")
    urls = []
    for entry in root:
        if _local(entry.tag) != "url":
            continue
        images = [loc for image in entry if _local(image.tag) == "image"
                  for loc in image if _local(loc.tag) == "loc"]
        locations = images or [loc for loc in entry if _local(loc.tag) == "loc"]
        for loc in locations:
            try:
                urls.append(validate_url(loc.text or ""))
            except InvalidValueError as exc:
                raise InvalidValueError("urls", f"{path}: <loc> {exc.message}") from None
    return urls


def _local(tag: str) -> str:
    """An element's name without its namespace (sitemaps are read with or without the standard namespaces)."""
    return tag.rsplit("}", 1)[-1]


def url_items(urls: Iterable[str], fetcher: Fetcher) -> list[InputItem]:
    """One item per declared URL; reading it fetches that URL (and only it: robots.txt and checked redirect
    hops aside) and sets the item's origin to the address that answered and when."""
    items = []
    for url in urls:
        item = InputItem(url, _nothing)
        item.read = partial(_fetch, item, fetcher)
        items.append(item)
    return items


def _fetch(item: InputItem, fetcher: Fetcher) -> bytes:
    fetched = fetcher.fetch(item.name)
    item.origin = Origin(url=fetched.final_url, fetched_at=fetched.fetched_at)
    return fetched.data


def _nothing() -> bytes:
    return b""
