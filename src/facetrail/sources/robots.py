"""robots.txt, fetched once per origin (scheme, host, port) and kept for the run, read as RFC 9309 says.

A robots.txt answered with 2xx is parsed (its first 512 KiB); 4xx means there are no rules (everything is
allowed); 5xx, or no answer at all (unreachable, timed out, refused, too many redirects), means everything is
disallowed for the run. The groups that name our product token (`facetrail`, case-insensitive) apply, merged,
else those of `*`; within them the longest matching rule wins, Allow on a tie, with the `*` and `$` wildcards.

Not urllib.robotparser: it applies the first rule that matches in file order and takes `*` and `$` literally, so
`Disallow: /*.jpg$`, the rule a site writes to keep its photos from being collected, would not stop it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit, urlunsplit

ROBOTS_MAX_BYTES = 512 * 1024
PRODUCT_TOKEN = "facetrail"


@dataclass(frozen=True)
class RobotsAnswer:
    """What asking for a robots.txt gave: its HTTP status and body, or status None when nothing answered."""

    status: int | None
    body: bytes = b""
    problem: str = ""


Download = Callable[[str], RobotsAnswer]
"""Fetch a robots.txt URL (following checked redirects); never raises."""


@dataclass(frozen=True)
class Rule:
    allow: bool
    pattern: str

    def matches(self, path: str) -> bool:
        return _compiled(self.pattern).match(path) is not None


@dataclass
class Group:
    agents: list[str] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    crawl_delay: float | None = None


@dataclass(frozen=True)
class Rules:
    """The rules that apply to us; `blocked_why` set when everything is disallowed (robots.txt failed)."""

    rules: tuple[Rule, ...] = ()
    crawl_delay: float = 0.0
    blocked_why: str = ""

    def allows(self, path: str) -> bool:
        """May this path (with its query) be fetched?"""
        if self.blocked_why:
            return False
        path = _normalised(path)
        if path == "/robots.txt":
            return True
        matching = [(len(rule.pattern), rule.allow) for rule in self.rules if rule.matches(path)]
        return max(matching)[1] if matching else True


def parse(text: str, token: str = PRODUCT_TOKEN) -> Rules:
    """The rules of a robots.txt that apply to the product `token`."""
    groups = _groups(text.splitlines())
    mine = [g for g in groups if any(agent.lower() == token for agent in g.agents)]
    chosen = mine or [g for g in groups if "*" in g.agents]
    delays = [g.crawl_delay for g in chosen if g.crawl_delay is not None]
    return Rules(tuple(rule for g in chosen for rule in g.rules), max(delays, default=0.0))


def _groups(lines: Iterable[str]) -> list[Group]:
    groups: list[Group] = []
    current: Group | None = None
    in_agents = False
    for raw in lines:
        key, _, value = raw.split("#", 1)[0].partition(":")
        key, value = key.strip().lower(), value.strip()
        if key == "user-agent":
            if current is None or not in_agents:
                current = Group()
                groups.append(current)
            current.agents.append(value)
            in_agents = True
        elif key in ("allow", "disallow") and current is not None:
            in_agents = False
            if value:  # an empty rule is no rule ("Disallow:" allows everything)
                current.rules.append(Rule(key == "allow", _normalised(value)))
        elif key == "crawl-delay" and current is not None:
            in_agents = False
            try:
                current.crawl_delay = max(0.0, float(value))
            except ValueError:
                pass  # not a number: ignored, as the other crawlers that read it do
    return groups


class RobotsCache:
    def __init__(self, download: Download, token: str = PRODUCT_TOKEN) -> None:
        self._download = download
        self._token = token
        self._rules: dict[str, Rules] = {}

    def check(self, url: str) -> str | None:
        """None if `url` may be fetched under its origin's robots.txt (fetched on first use), else why not."""
        rules = self._of(url)
        parts = urlsplit(url)
        if rules.allows(urlunsplit(("", "", parts.path or "/", parts.query, ""))):
            return None
        origin = _origin(url)
        return f"disallowed by robots.txt: {origin}/robots.txt {rules.blocked_why or 'has a rule against it'}"

    def crawl_delay(self, url: str) -> float:
        """The Crawl-delay the origin's robots.txt asks of us, in seconds (0 when none or not fetched yet)."""
        known = self._rules.get(_origin(url))
        return known.crawl_delay if known else 0.0

    def _of(self, url: str) -> Rules:
        origin = _origin(url)
        if origin not in self._rules:
            self._rules[origin] = _rules(self._download(f"{origin}/robots.txt"), self._token)
        return self._rules[origin]


def _rules(answer: RobotsAnswer, token: str) -> Rules:
    if answer.status is None:
        return Rules(blocked_why=f"could not be fetched ({answer.problem}): everything is disallowed")
    if 200 <= answer.status < 300:
        return parse(answer.body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace"), token)
    if 400 <= answer.status < 500:
        return Rules()
    return Rules(blocked_why=f"answered HTTP {answer.status}: everything is disallowed")


def _normalised(path: str) -> str:
    """Paths and patterns compared with their percent-escapes decoded (`%7E` and `~` are the same octets)."""
    return unquote(path)


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    """A rule's path pattern as a regular expression: `*` any run of characters, a final `$` the end."""
    anchored = pattern.endswith("$")
    body = ".*".join(re.escape(part) for part in (pattern[:-1] if anchored else pattern).split("*"))
    return re.compile(body + (r"\Z" if anchored else ""), re.DOTALL)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))
