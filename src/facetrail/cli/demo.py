"""`facetrail demo` (what `make run` runs): a demo data directory, a labelled demo source, the samples, a key
and a server.

Run again, the demo reuses its directory: the source is found by name, ingestion skips the photos already
there (by hash) and a new investigator key is issued, while earlier keys keep working. It never wipes a
directory, refuses one it did not create, refuses one another process holds (naming it), and takes its port
before it changes anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facetrail.accounts.roles import Actor
from facetrail.cli.output import console, emit_json, progress_bar, reported_errors
from facetrail.cli.state import JsonOpt, state
from facetrail.datadir import swap
from facetrail.demo import QUERY_PHOTO, SAMPLES
from facetrail.errors import InvalidValueError
from facetrail.runtime import Facetrail, local_actor
from facetrail.sources.inputs import from_paths
from facetrail.store.models import Source

MARKER = ".facetrail-demo"
DEMO_DATA = Path("facetrail-demo")
SOURCE_NAME = "demo: bundled sample photos"
INVESTIGATOR = "demo-investigator"


def demo_dir(path: Path) -> None:
    """Make `path` the demo's directory, or check that it is one no other process holds."""
    if path.exists() and any(path.iterdir()):
        if not (path / MARKER).exists():
            raise InvalidValueError("data", f"{path} holds data that is not a facetrail demo; choose another --data")
        with swap.exclusive(path, "running the demo on it again (or use another --data)"):
            return
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).write_text("created by `facetrail demo`; the next run reuses it\n")


def demo_source(ft: Facetrail, actor: Actor) -> Source:
    for source in ft.sources.list(actor):
        if source.name == SOURCE_NAME:
            return source
    return ft.sources.add(
        actor, name=SOURCE_NAME, controller="facetrail demo", purposes=["demo"],
        legal_basis="consent", art9_condition="a",
        evidence_ref="DEMO ONLY - public sample photos of public figures, see facetrail/demo/NOTICE.md",
        jurisdictions=["US"], retention_days=30,
        description="Demonstration source. Sample photos bundled with facetrail (MIT-licensed examples of "
                    "the face_recognition project). Basis documented as explicit consent for the demo.",
    )


def _new_name(taken: set[str]) -> str:
    """demo-investigator, then demo-investigator-2, -3...: each run gets an account (and key) of its own."""
    name, n = INVESTIGATOR, 1
    while name in taken:
        n += 1
        name = f"{INVESTIGATOR}-{n}"
    return name


def demo(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to serve on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to serve on")] = 8000,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="start the API server afterwards")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Set up (or reuse) a demo on the bundled sample photos in ./facetrail-demo (or --data) and serve the API."""
    app_state = state(ctx)
    # The demo's own directory unless --data names one; FACETRAIL_DATA (a real store, perhaps) is not used.
    data = app_state.data = app_state.data or DEMO_DATA
    with reported_errors(as_json):
        from facetrail.api.server import serve as serve_api
        from facetrail.api.server import take_port

        sock = take_port(host, port) if serve else None
        try:
            demo_dir(data)
            ft = app_state.open(create=True)
            actor = local_actor()
            source = demo_source(ft, actor)
            with progress_bar("ingesting demo photos", enabled=not as_json) as update:
                report = ft.ingest.ingest(actor, source.id, list(from_paths([SAMPLES], ft.input_limits)),
                                          progress=update, workers=1)
            name = _new_name({a.name for a in ft.accounts.list(actor)})
            _account, key = ft.accounts.create(actor, name=name, role="investigator")
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        url = f"http://{host}:{port if sock is None else sock.getsockname()[1]}"
        curl = (f"curl -s -H 'Authorization: Bearer {key}' -F photo=@{QUERY_PHOTO} "
                f"-F purpose=demo -F case=demo-1 {url}/v1/search")
        if as_json:
            emit_json({"data": str(data), "model_id": ft.gallery.model_id, "source_id": source.id,
                       "report": report.as_dict(),
                       "investigator": name, "investigator_key": key, "curl": curl, "url": url})
        else:
            console.print(f"demo data directory: {data}", highlight=False)
            console.print(f"vision model: {ft.settings.vision_model} ({ft.gallery.model_id}; "
                          "FACETRAIL_VISION_MODEL picks another)", highlight=False)
            console.print(f"source {source.id} '{source.name}': {report.images_added} images added, "
                          f"{report.images_skipped} already there, {report.faces_added} faces added", highlight=False)
            console.print(f"investigator API key of {name} (shown once):", highlight=False)
            console.print(key, highlight=False, soft_wrap=True)
            console.print("search with a photo that is not in the collection:")
            console.print(curl, highlight=False, soft_wrap=True)
            console.print(f"API docs: {url}/docs", highlight=False)
        if sock is not None:
            serve_api(ft, sock)
