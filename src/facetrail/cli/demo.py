"""`facetrail demo`: a fresh data directory, a labelled demo source, the samples, a key and a server."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from facetrail.cli.output import console, emit_json, progress_bar, reported_errors
from facetrail.cli.state import JsonOpt
from facetrail.demo import QUERY_PHOTO, SAMPLES
from facetrail.errors import InvalidValueError
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths

MARKER = ".facetrail-demo"


def fresh_demo_dir(path: Path) -> None:
    """Empty `path` for the demo; refuse to touch a directory the demo did not create."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise InvalidValueError("data", f"{path} holds data that is not a facetrail demo; choose another --data")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("created by `facetrail demo`; erased by the next run\n")


def demo(
    data: Annotated[Path, typer.Option("--data", help="demo data directory (re-created)")] = Path("facetrail-demo"),
    host: Annotated[str, typer.Option(help="address to serve on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to serve on")] = 8000,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="start the API server afterwards")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Set up a demo on the bundled sample photos and serve the API."""
    with reported_errors(as_json):
        fresh_demo_dir(data)
        ft = Facetrail.open(data)
        actor = local_actor()
        source = ft.sources.add(
            actor, name="demo: bundled sample photos", controller="facetrail demo", purposes=["demo"],
            legal_basis="consent", art9_condition="a",
            evidence_ref="DEMO ONLY - public sample photos of public figures, see facetrail/demo/NOTICE.md",
            jurisdictions=["US"], retention_days=30,
            description="Demonstration source. Sample photos bundled with facetrail (MIT-licensed examples of "
                        "the face_recognition project). Basis documented as explicit consent for the demo.",
        )
        with progress_bar("ingesting demo photos", enabled=not as_json) as update:
            report = ft.ingest.ingest(actor, source.id, list(from_paths([SAMPLES], ft.input_limits)),
                                      progress=update, workers=1)
        _account, key = ft.accounts.create(actor, name="demo-investigator", role="investigator")
        url = f"http://{host}:{port}"
        curl = (f"curl -s -H 'Authorization: Bearer {key}' -F photo=@{QUERY_PHOTO} "
                f"-F purpose=demo -F case=demo-1 {url}/v1/search")
        if as_json:
            emit_json({"data": str(data), "source_id": source.id, "report": report.as_dict(),
                       "investigator_key": key, "curl": curl, "url": url})
        else:
            console.print(f"demo data directory: {data}")
            console.print(f"source {source.id} '{source.name}': {report.images_added} images, "
                          f"{report.faces_added} faces")
            console.print("investigator API key (shown once):")
            console.print(key, highlight=False, soft_wrap=True)
            console.print("search with a photo that is not in the collection:")
            console.print(curl, highlight=False, soft_wrap=True)
            console.print(f"API docs: {url}/docs")
        if serve:
            from facetrail.api.server import serve as serve_api
            from facetrail.api.server import take_port

            serve_api(ft, take_port(host, port))
