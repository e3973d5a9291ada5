"""robots.txt, fetched once per origin (scheme, host, port) and kept for the run, read as RFC 9309 says.

A robots.txt answered with 2xx is parsed (its first 512 KiB); 4xx means there are no rules (everything is
allowed); 5xx, or no answer at all (unreachable, timed out, refused), means everything is disallowed until the
next run. The rules are matched by Python's urllib.robotparser: it applies the first rule that matches, in file
order, and does not know the `*` and `$` wildcards of RFC 9309 (a rule using them matches literally).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

ROBOTS_MAX_BYTES = 512 * 1024
DISALLOW_ALL = ("User-agent: *", "Disallow: /")


@dataclass(frozen=True)
class RobotsAnswer:
    """What asking for a robots.txt gave: its HTTP status and body, or status None when nothing answered."""

    status: int | None
    body: bytes = b""
    problem: str = ""


Download = Callable[[str], RobotsAnswer]
"""Fetch a robots.txt URL (following checked redirects); never raises."""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    why: str = ""


class RobotsCache:
    def __init__(self, download: Download, user_agent: str) -> None:
        self._download = download
        self._agent = user_agent
        self._rules: dict[str, tuple[RobotFileParser, str]] = {}

    def check(self, url: str) -> Verdict:
        """May `url` be fetched under its origin's robots.txt? (Fetches that robots.txt on first use.)"""
        parser, problem = self._parser(url)
        if parser.can_fetch(self._agent, url):
            return Verdict(True)
        origin = _origin(url)
        why = f"{origin}/robots.txt {problem}" if problem else f"a Disallow rule of {origin}/robots.txt"
        return Verdict(False, f"disallowed by robots.txt: {why}")

    def crawl_delay(self, url: str) -> float:
        """The Crawl-delay the origin's robots.txt asks of us, in seconds (0 when none or not fetched yet)."""
        known = self._rules.get(_origin(url))
        delay = known[0].crawl_delay(self._agent) if known else None
        return float(delay or 0)

    def _parser(self, url: str) -> tuple[RobotFileParser, str]:
        origin = _origin(url)
        if origin not in self._rules:
            self._rules[origin] = _rules(self._download(f"{origin}/robots.txt"))
        return self._rules[origin]


def _rules(answer: RobotsAnswer) -> tuple[RobotFileParser, str]:
    """The parsed rules, and why everything is disallowed when it is (else "")."""
    parser = RobotFileParser()
    if answer.status is None:
        parser.parse(DISALLOW_ALL)
        return parser, f"could not be fetched ({answer.problem}): everything is disallowed"
    if 200 <= answer.status < 300:
        text = answer.body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace")
        parser.parse(text.splitlines())
        return parser, ""
    if 400 <= answer.status < 500:
        parser.parse([])
        return parser, ""
    parser.parse(DISALLOW_ALL)
    return parser, f"answered HTTP {answer.status}: everything is disallowed"


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))
