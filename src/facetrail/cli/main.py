"""`facetrail`: sources, ingestion, search, accounts, audit, index, server and demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from facetrail.cli import commands_admin, commands_backup, commands_bench, commands_data, commands_requests, demo
from facetrail.cli.commands_audit import audit_app  # the audit commands, checkpoints included
from facetrail.cli.commands_breaches import breach_app
from facetrail.cli.commands_compliance import compliance_app, export_app
from facetrail.cli.commands_orders import order_app
from facetrail.cli.commands_people import people_app
from facetrail.cli.commands_retention import retention_app, retire
from facetrail.cli.state import AppState, DataOptionAnywhere

app = typer.Typer(cls=DataOptionAnywhere, no_args_is_help=True, add_completion=False,
                  help="facetrail: face search that is lawful by design.")


@app.callback()
def main_options(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Option(
        "--data", help="data directory, before or after the command (default: $FACETRAIL_DATA, else "
                       "./facetrail-data; the demo's own: ./facetrail-demo)")] = None,
) -> None:
    # FACETRAIL_DATA is read with the other settings (config.py) when --data is not given.
    ctx.obj = AppState(data=data)
    ctx.call_on_close(ctx.obj.close)


app.command("init")(commands_backup.init)
app.add_typer(commands_data.source_app, name="source")
app.command("ingest")(commands_data.ingest)
app.command("ingest-urls")(commands_data.ingest_urls)
app.command("search")(commands_data.search)
app.command("worker")(commands_data.worker)
app.add_typer(commands_admin.user_app, name="user")
app.add_typer(audit_app, name="audit")
app.add_typer(commands_admin.index_app, name="index")
app.add_typer(people_app, name="people")
app.command("serve")(commands_admin.serve)
app.command("demo")(demo.demo)
app.add_typer(commands_bench.bench_app, name="bench")
app.add_typer(commands_requests.request_app, name="request")
app.add_typer(commands_backup.backup_app, name="backup")
app.add_typer(commands_backup.keys_app, name="keys")
app.add_typer(order_app, name="order")
app.add_typer(retention_app, name="retention")
commands_data.source_app.command("retire")(retire)
app.add_typer(compliance_app, name="compliance")
app.add_typer(breach_app, name="breach")
app.add_typer(export_app, name="export")


def main() -> None:
    app()
