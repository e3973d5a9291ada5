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
from facetrail.ingest.analysis import vision_config

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks of recognition quality.")


def _versions() -> dict[str, str]:
    names = ("facetrail", "dlib-bin", "face-recognition-models", "face_recognition", "faiss-cpu", "onnxruntime",
             "openvino")
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
    pipeline: Annotated[list[str] | None, typer.Option(
        "--pipeline", help="a vision pipeline to compare (dlib, yunet-dlib, yunet-intel, yunet-n-intel); "
                           "repeat it; writes the 'Vision pipelines' section instead")] = None,
    samples: Annotated[Path | None, typer.Option(help="labelled sample photos (labels.tsv) to measure each "
                                                      "pipeline on, with --pipeline")] = None,
    calibrations: Annotated[Path | None, typer.Option(help="with --pipeline: folder to store each pipeline's "
                                                           "calibration in, as <model id>.json")] = None,
    reuse_dlib: Annotated[bool, typer.Option("--reuse-dlib/--measure-dlib", help="with --pipeline: cite dlib's "
                                             "LFW figures from the output's accuracy section")] = True,
    samples_only: Annotated[list[str] | None, typer.Option(
        "--samples-only", help="with --pipeline: measure this pipeline on the sample photos only, not on LFW")] = None,
    as_json: JsonOpt = False,
) -> None:
    """LFW verification (10-fold), open-set identification, score-band calibration and clustering."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from facetrail.evaluation.accuracy import add_clustering, report, run_pipeline, select_keys, write_section
    from facetrail.evaluation.accuracy import as_json as results_json

    if pipeline:
        _compare_pipelines(lfw_root, pipeline, samples=samples, stride=stride, workers=workers, cache=cache,
                           output=output, calibrations=calibrations, reuse_dlib=reuse_dlib,
                           samples_only=samples_only or [], as_json=as_json)
        return
    with reported_errors(as_json):
        settings = get_settings(model=model)
        config = vision_config(settings)
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
        config = vision_config(settings)
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


def _compare_pipelines(lfw_root: Path, names: list[str], *, samples: Path | None, stride: int, workers: int,
                       cache: Path | None, output: Path | None, calibrations: Path | None, reuse_dlib: bool,
                       samples_only: list[str], as_json: bool) -> None:
    """Each vision pipeline on LFW and on the sample photos; the "Vision pipelines" section of BENCHMARKS.md."""
    from dataclasses import asdict

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    from facetrail.evaluation.accuracy import as_json as results_json
    from facetrail.evaluation.accuracy import pipelines_report, reference_row, run_pipeline, select_keys, write_section
    from facetrail.evaluation.samples import evaluate_samples
    from facetrail.vision.composite import VisionModel

    with reported_errors(as_json):
        settings = get_settings()
        chosen = [VisionModel(n).value for n in dict.fromkeys(names)]
        configs = {n: vision_config(settings, vision_model=n, model=None) for n in chosen}
        reference = reference_row(output) if output is not None and reuse_dlib else None
        skipped = {VisionModel(n).value for n in samples_only}
        on_lfw = [n for n in chosen if n not in skipped and not (n == VisionModel.DLIB.value and reference is not None)]
        keys = select_keys(lfw_root, stride)
        results = []
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=err_console, disable=as_json) as bar:
            tasks = {n: bar.add_task(f"LFW templates: {n}", total=len(keys)) for n in on_lfw}
            for n in on_lfw:
                def advance(_pipeline: str, done: int, _total: int, task: TaskID = tasks[n]) -> None:
                    bar.update(task, completed=done)

                results.append(run_pipeline(
                    "facetrail", lfw_root, keys, configs[n], workers=workers or settings.worker_count(), cache=cache,
                    progress=advance, stride=stride, label=n))
        measured = {n: evaluate_samples(samples, n, configs[n]) for n in chosen} if samples is not None else {}
        if calibrations is not None:
            for r in results:
                assert r.calibration is not None
                r.calibration.save(calibrations / f"{r.model_id}.json")
        command = "facetrail " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        text = pipelines_report(results, measured, command=command, versions=_versions(), reference=reference,
                                stride=stride)
        if output is not None:
            write_section(output, "vision-pipelines", text)
        if as_json:
            emit_json({"lfw": results_json(results), "samples": {n: asdict(s) for n, s in measured.items()}})
        else:
            console.print(text, markup=False, highlight=False)
