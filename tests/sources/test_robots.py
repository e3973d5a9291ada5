"""robots.txt read as RFC 9309 says: our group or `*`, longest match, Allow on a tie, `*` and `$` wildcards."""

from __future__ import annotations

import pytest

from facetrail.sources.robots import RobotsAnswer, RobotsCache, parse

SITE = """\
# photos are not for collection
User-agent: *
Disallow: /*.jpg$
Allow: /press/
Disallow: /private
Crawl-delay: 2

User-agent: OtherBot
Disallow: /
"""


@pytest.mark.parametrize("path,allowed", [
    ("/gallery/a.jpg", False),       # a wildcard rule: urllib.robotparser would take it literally and allow
    ("/gallery/a.jpg?size=2", True),  # `$` anchors the end: this path goes on past ".jpg"
    ("/press/a.jpg", True),           # "/press/" and "/*.jpg$" are both 7 long: on a tie Allow wins
    ("/press/photos/a.jpg", True),
    ("/private/x.png", False),
    ("/privateer.png", False),        # a rule is a prefix
    ("/public/a.png", True),
    ("/robots.txt", True),
])
def test_rules_for_everyone(path: str, allowed: bool) -> None:
    rules = parse(SITE)
    assert rules.allows(path) is allowed
    assert rules.crawl_delay == 2


def test_our_own_group_replaces_the_one_for_everyone() -> None:
    text = SITE + "\nUser-agent: FaceTrail\nUser-agent: another\nAllow: /\nDisallow: /club/\n"
    rules = parse(text)
    assert rules.allows("/gallery/a.jpg") and not rules.allows("/club/a.png") and rules.crawl_delay == 0
    assert parse("User-agent: facetrail-extra\nDisallow: /\n").allows("/a.jpg"), "a token is matched whole"
    assert parse("User-agent: *\nDisallow:\n").allows("/a.jpg"), "an empty Disallow allows everything"


def test_percent_escapes_and_their_characters_are_the_same_path() -> None:
    rules = parse("User-agent: *\nDisallow: /~club/\n")
    assert not rules.allows("/%7Eclub/a.jpg")


@pytest.mark.parametrize("answer,allowed,why", [
    (RobotsAnswer(404), True, ""),
    (RobotsAnswer(401), True, ""),
    (RobotsAnswer(500), False, "answered HTTP 500: everything is disallowed"),
    (RobotsAnswer(None, problem="timed out"), False, "could not be fetched (timed out): everything is disallowed"),
    (RobotsAnswer(200, b"User-agent: *\nDisallow: /a\n"), False, "has a rule against it"),
])
def test_how_a_robots_txt_answer_is_read(answer: RobotsAnswer, allowed: bool, why: str) -> None:
    asked: list[str] = []

    def download(url: str) -> RobotsAnswer:
        asked.append(url)
        return answer

    cache = RobotsCache(download)
    for _ in range(2):
        refused = cache.check("https://club.example/a.jpg")
        assert (refused is None) is allowed and (why in refused if refused else True)
    assert asked == ["https://club.example/robots.txt"], "once per origin and run"
