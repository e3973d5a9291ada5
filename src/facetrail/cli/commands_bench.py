"""`facetrail bench accuracy`: measure a model on LFW, beside the peer pipeline, and calibrate its bands."""

from __future__ import annotations

import os
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated

import typer

from facetrail.cli.output import console, emit_json, err_console, reported_errors
from facetrail.cli.state import JsonOpt
from facetrail.config import get_settings
from facetrail.vision.backend import VisionConfig

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of recognition quality.")


def _versions() -> dict[str, str]:
    names = ("facetrail", "dlib-bin", "face-recognition-models", "face_recognition", "faiss-cpu", "onnxruntime")
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


@bench_app.command("accuracy")
def accuracy(
    lfw_root: Annotated[Path, typer.Option("--lfw", help="LFW folder with images/, pairs.txt, pairsDev*.txt")],
    model: Annotated[Path | None, typer.Option(help="an ONNX embedding model (with its .json description)")] = None,
    peer: Annotated[bool, typer.Option("--peer/--no-peer", help="also run the face_recognition pipeline")] = True,
    cluster: Annotated[bool, typer.Option("--cluster/--no-cluster", help="measure people clustering")] = True,
    stride: Annotated[int, typer.Option(help="use every Nth pair only (a quick slice); 1 = the full protocol")] = 1,
    workers: Annotated[int, typer.Option(help="processes per pipeline (default: one per core)")] = 0,
    cache: Annotated[Path | None, typer.Option(help="folder to cache templates in")] = None,
    output: Annotated[Path | None, typer.Option(help="Markdown file to write the results section into")] = None,
    calibration_out: Annotated[Path | None, typer.Option(help="where to store the measured calibration")] = None,
    as_json: JsonOpt = False,
) -> None:
    """LFW verification (10-fold), open-set identification, score-band calibration and clustering."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from facetrail.evaluation.accuracy import add_clustering, report, run_pipeline, select_keys, write_section
    from facetrail.evaluation.accuracy import as_json as results_json

    with reported_errors(as_json):
        settings = get_settings(model=model)
        config = VisionConfig(detector=settings.detector, upsample_budget_pixels=settings.upsample_budget_pixels,
                              max_upsample=settings.max_upsample, detector_fallback=settings.detector_fallback,
                              jitters=settings.jitters, model=settings.model,
                              max_image_pixels=settings.max_image_pixels)
        keys = select_keys(lfw_root, stride)
        pipelines = ["facetrail", *(["peer"] if peer else [])]
        results = []
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err_console, disable=as_json) as bar:
            tasks = {name: bar.add_task(f"templates: {name}", total=len(keys)) for name in pipelines}
            for name in pipelines:
                results.append(run_pipeline(
                    name, lfw_root, keys, config, workers=workers or settings.worker_count(), cache=cache,
                    progress=lambda n, done, _total: bar.update(tasks[n], completed=done), stride=stride))
        if cluster:
            add_clustering(results)
        command = "facetrail " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        text = report(results, command=command, versions=_versions(), stride=stride)
        if calibration_out is not None and results[0].calibration is not None:
            results[0].calibration.save(calibration_out)
        if output is not None:
            write_section(output, "accuracy" if model is None else f"accuracy-{results[0].model_id}", text)
        if as_json:
            emit_json(results_json(results))
        else:
            console.print(text, markup=False, highlight=False)


@bench_app.command("fpir")
def fpir(
    lfw_root: Annotated[Path, typer.Option("--lfw", help="LFW folder with images/ and pairsDevTrain.txt")],
    sizes: Annotated[str, typer.Option(help="gallery sizes, comma-separated (the enrolled faces plus synthetic "
                                       "distractors); the smallest may be the enrolled faces alone")] =
    "700,10000,100000,1000000",
    enrolled: Annotated[int, typer.Option(help="LFW people enrolled (one gallery photo, one mated probe)")] = 700,
    non_mated: Annotated[int, typer.Option(help="LFW people never enrolled (one non-mated probe each)")] = 2000,
    model: Annotated[Path | None, typer.Option(help="an ONNX embedding model (with its .json description)")] = None,
    workers: Annotated[int, typer.Option(help="processes for the templates (default: one per core)")] = 0,
    cache: Annotated[Path | None, typer.Option(help="folder to cache templates in")] = None,
    output: Annotated[Path | None, typer.Option(help="Markdown file to write the '1:N bands' section into")] = None,
    as_json: JsonOpt = False,
) -> None:
    """FPIR against FNIR on LFW's open-set protocol at several gallery sizes, for the automatic threshold and
    each band (the model's own calibration)."""
    import platform
    from dataclasses import asdict

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from facetrail.errors import InvalidValueError
    from facetrail.evaluation import openset
    from facetrail.vision.backend import load_backend

    with reported_errors(as_json):
        settings = get_settings(model=model)
        config = openset.vision_config(settings)
        backend = load_backend(config)
        calibration = backend.calibration()
        if calibration is None:
            raise InvalidValueError("model", f"{backend.model_id} has no calibration: run `facetrail bench accuracy` "
                                    "with --calibration-out first")
        try:
            wanted = [int(s.replace("_", "")) for s in sizes.split(",") if s.strip()]
        except ValueError:
            raise InvalidValueError("sizes", f"{sizes!r} is not a comma-separated list of whole numbers") from None
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err_console, disable=as_json) as bar:
            task = bar.add_task("templates", total=enrolled * 2 + non_mated)
            try:
                result = openset.run(
                    lfw_root, sizes=wanted, enrolled=enrolled, non_mated=non_mated, config=config,
                    model_id=backend.model_id, calibration=calibration, target_fpir=settings.target_fpir,
                    workers=workers or settings.worker_count(), cache=cache,
                    progress=lambda done, _total: bar.update(task, completed=done),
                    status=lambda text: bar.update(task, description=text))
            except ValueError as exc:
                raise InvalidValueError("benchmark", str(exc)) from None
        command = "facetrail " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        machine = f"{platform.node() or 'unknown host'} ({platform.machine()}, {os.cpu_count()} CPUs)"
        text = openset.report(result, command=command, machine=machine)
        if output is not None:
            openset.write_section(output, text)
        if as_json:
            emit_json(asdict(result))
        else:
            console.print(text, markup=False, highlight=False)
