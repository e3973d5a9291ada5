"""A generated document (record of processing, DPIA) as sections, rendered to Markdown or HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from facetrail.errors import InvalidValueError

BLANK = "______________________________"


class Format(StrEnum):
    JSON = "json"
    MARKDOWN = "md"
    HTML = "html"

    @classmethod
    def parse(cls, value: str) -> Format:
        try:
            return cls((value or "").strip().lower())
        except ValueError:
            raise InvalidValueError("format", f"{value!r} is not one of: {', '.join(f.value for f in cls)}") from None


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Section:
    """`items` are facts (a bulleted list); `blanks` are questions left for the controller to answer."""

    title: str
    intro: str = ""
    items: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    blanks: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    title: str
    subtitle: str
    sections: Sequence[Section] = field(default_factory=tuple)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
    return Table(tuple(headers), tuple(tuple("" if c is None else str(c) for c in row) for row in rows))


def to_markdown(doc: Document) -> str:
    out = [f"# {doc.title}", "", doc.subtitle, ""]
    for section in doc.sections:
        out += [f"## {section.title}", ""]
        if section.intro:
            out += [section.intro, ""]
        if section.items:
            out += [f"- {item}" for item in section.items] + [""]
        for t in section.tables:
            out.append("| " + " | ".join(_cell(h) for h in t.headers) + " |")
            out.append("|" + "---|" * len(t.headers))
            out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
            out.append("")
        if section.blanks:
            out += ["*To be completed by the controller:*", ""]
            out += [f"- {question}: {BLANK}" for question in section.blanks] + [""]
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_html(doc: Document) -> str:
    e = html.escape
    parts = ["<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">", f"<title>{e(doc.title)}</title>",
             "<style>body{font-family:sans-serif;max-width:60em;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:4px 8px;text-align:left}.blank{color:#a00}</style>",
             f"<h1>{e(doc.title)}</h1><p>{e(doc.subtitle)}</p>"]
    for section in doc.sections:
        parts.append(f"<h2>{e(section.title)}</h2>")
        if section.intro:
            parts.append(f"<p>{e(section.intro)}</p>")
        if section.items:
            parts.append("<ul>" + "".join(f"<li>{e(item)}</li>" for item in section.items) + "</ul>")
        for t in section.tables:
            head = "".join(f"<th>{e(h)}</th>" for h in t.headers)
            body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in t.rows)
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        if section.blanks:
            parts.append("<p class=\"blank\"><em>To be completed by the controller:</em></p><ul>" + "".join(
                f"<li>{e(q)}: {BLANK}</li>" for q in section.blanks) + "</ul>")
    parts.append("</html>")
    return "".join(parts)


def render(doc: Document, fmt: Format) -> str:
    match fmt:
        case Format.MARKDOWN:
            return to_markdown(doc)
        case Format.HTML:
            return to_html(doc)
        case _:
            raise InvalidValueError("format", f"{fmt.value} is not a document format (md, html)")
