"""The accuracy benchmark on LFW: verification, identification, calibration, bands and clustering,
for facetrail and (optionally) the peer pipeline on the same images, written as a Markdown report."""

from __future__ import annotations

import platform
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from facetrail.evaluation import lfw
from facetrail.evaluation.metrics import (
    ClusterQuality,
    Identification,
    Verification,
    band_fmrs,
    cluster_quality,
    identification,
    impostor_distances,
    pair_distances,
    verification,
)
from facetrail.evaluation.pipelines import Templates, extract_templates
from facetrail.evaluation.samples import SampleResult
from facetrail.vision.backend import VisionConfig, load_backend
from facetrail.vision.calibration import Band, Calibration

Progress = Callable[[str, int, int], None]


@dataclass
class PipelineResult:
    name: str
    model_id: str
    images: int
    failed_to_enrol: int
    detectors: dict[str, int]
    seconds: float
    verification: Verification
    identification: Identification
    clustering: ClusterQuality | None = None
    calibration: Calibration | None = None
    band_fmr_test: dict[str, float] = field(default_factory=dict)
    templates: Templates | None = field(default=None, repr=False)


def select_keys(root: Path, stride: int) -> list[str]:
    """Every LFW image (stride 1), or only the images of every `stride`-th pair of each protocol file."""
    if stride <= 1:
        return lfw.all_images(root)
    keys: set[str] = set()
    for name in ("pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"):
        keys.update(lfw.pair_images(lfw.read_pairs(root / name)[::stride]))
    return sorted(keys)


def run_pipeline(name: str, root: Path, keys: list[str], config: VisionConfig, *, workers: int, cache: Path | None,
                 progress: Progress | None, stride: int = 1, label: str | None = None) -> PipelineResult:
    """One pipeline ('facetrail' with `config`, or 'peer') on `keys`; `label` names it in the report."""
    model_id = load_backend(config).model_id if name == "facetrail" else "face_recognition-1.3.0"
    started = time.perf_counter()
    templates = extract_templates(
        name, [lfw.image_path(root, k) for k in keys], keys, config=config, model_id=model_id, workers=workers,
        cache=cache, progress=(lambda done, total: progress(name, done, total)) if progress else None)
    seconds = time.perf_counter() - started
    view2 = lfw.read_pairs(root / "pairs.txt")[::stride]
    distances = pair_distances(templates, view2)
    same = np.array([p.same for p in view2])
    folds = np.array([p.fold for p in view2])
    result = PipelineResult(
        name=label or name, model_id=model_id, images=len(keys), failed_to_enrol=int((~templates.enrolled).sum()),
        detectors=dict(Counter(templates.detectors)), seconds=seconds,
        verification=verification(distances, same, folds), identification=identification(templates))
    train_keys = lfw.pair_images(lfw.read_pairs(root / "pairsDevTrain.txt")[::stride])
    test_keys = lfw.pair_images(lfw.read_pairs(root / "pairsDevTest.txt")[::stride])
    calibration = Calibration.from_impostors(
        model_id, impostor_distances(templates, train_keys),
        data=f"LFW View 1 train (pairsDevTrain.txt): all different-person pairs among its {len(train_keys)} images",
        extra={"pipeline": label or name})
    result.calibration = calibration
    result.band_fmr_test = band_fmrs(impostor_distances(templates, test_keys),
                                     {b.value: calibration.threshold(b) for b in (Band.STRONG, Band.PROBABLE,
                                                                                Band.POSSIBLE)})
    result.templates = templates
    return result


def add_clustering(results: list[PipelineResult]) -> None:
    """Cluster each pipeline's templates of the photos that *every* pipeline enrolled, so all are
    measured on the same faces, with each pipeline's own 'strong' threshold."""
    common = np.logical_and.reduce([r.templates.enrolled for r in results if r.templates is not None])
    for r in results:
        assert r.templates is not None and r.calibration is not None
        r.clustering = clustering(r.templates, r.calibration, np.flatnonzero(common))


def clustering(templates: Templates, calibration: Calibration, rows: np.ndarray) -> ClusterQuality:
    from facetrail.people.clustering import CLUSTER_BAND, cluster_templates

    labels = cluster_templates(templates.vectors[rows], calibration.threshold(CLUSTER_BAND))
    return cluster_quality([int(x) for x in labels], [lfw.identity(templates.keys[r]) for r in rows])


def _run_header(command: str, versions: dict[str, str], stride: int) -> list[str]:
    """When and where a run was made, with the command to reproduce it (and a warning for a slice)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"Run {when} on {platform.node() or 'unknown host'} ({platform.machine()}, {_cpus()} CPUs, "
        f"Python {platform.python_version()}). Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        "", f"Reproduce: `{command}`", "",
        *([f"**A slice: every {stride}th pair only; the figures are not comparable with full runs.**", ""]
          if stride > 1 else []),
    ]


def report(results: list[PipelineResult], *, command: str, versions: dict[str, str], stride: int = 1) -> str:
    """The Markdown section for BENCHMARKS.md."""
    lines = [
        *_run_header(command, versions, stride),
        "### LFW View 2 verification (10 folds, threshold chosen on the other 9)", "",
        "| pipeline | model | accuracy (mean ± std) | TAR @ FAR=1e-3 | ROC AUC | failed to enrol | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        v = r.verification
        lines.append(f"| {r.name} | {r.model_id} | {v.accuracy_mean:.2%} ± {v.accuracy_std:.2%} | "
                     f"{v.tar_at_far_1e3:.2%} | {v.roc_auc:.4f} | {r.failed_to_enrol} of {r.images} | "
                     f"{r.seconds:.0f} |")
    lines += ["", f"### Open-set identification over {results[0].images if results else 0} LFW images", "",
              "| pipeline | gallery | mated probes | non-mated probes | rank-1 | rank-10 | FNIR @ FPIR=0.3% |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        i = r.identification
        lines.append(f"| {r.name} | {i.gallery} | {i.mated_probes} | {i.non_mated_probes} | {i.rank1:.2%} | "
                     f"{i.rank10:.2%} | {i.fnir_at_fpir:.2%} |")
    lines += ["", "### Score bands: thresholds from View 1 train, false-match rates measured on View 1 test", "",
              "| pipeline | band | target FMR | distance threshold | measured FMR (test) | ratio |",
              "|---|---|---|---|---|---|"]
    for r in results:
        assert r.calibration is not None
        for band in (Band.STRONG, Band.PROBABLE, Band.POSSIBLE):
            measured = r.band_fmr_test[band.value]
            lines.append(f"| {r.name} | {band.value} | {band.target_fmr:.0e} | {r.calibration.threshold(band):.4f} | "
                         f"{measured:.2e} | {measured / band.target_fmr:.2f} |")
    clustered = [r for r in results if r.clustering]
    if clustered:
        lines += ["", "### People clustering (photos all pipelines enrolled; each one's 'strong' band)", "",
                  "| pipeline | clusters | people | pairwise P | pairwise R | pairwise F "
                  "| BCubed P | BCubed R | BCubed F |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in clustered:
            c = r.clustering
            assert c is not None
            lines.append(f"| {r.name} | {c.clusters} | {c.people} | {c.pairwise_precision:.3f} | "
                         f"{c.pairwise_recall:.3f} | {c.pairwise_f:.3f} | {c.bcubed_precision:.3f} | "
                         f"{c.bcubed_recall:.3f} | {c.bcubed_f:.3f} |")
    lines += ["", "Detectors that found the enrolled faces: " + "; ".join(
        f"{r.name}: " + ", ".join(f"{k} {v}" for k, v in sorted(r.detectors.items())) for r in results)]
    return "\n".join(lines) + "\n"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace (or append) the section between markers `<!-- name:begin -->` and `<!-- name:end -->`."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + f"\n\n## Accuracy ({name})\n\n{block}\n"
    path.write_text(text)


def as_json(results: list[PipelineResult]) -> list[dict[str, Any]]:
    out = []
    for r in results:
        item = asdict(r)
        item.pop("templates", None)
        item["calibration"] = r.calibration.to_json() if r.calibration else None
        out.append(item)
    return out


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def reference_row(benchmarks: Path, model_id: str = "dlib-resnet-v1") -> dict[str, str] | None:
    """The figures of `model_id` in the last full run of the accuracy section of BENCHMARKS.md (its
    verification and identification rows, and the run's date), to cite beside pipelines measured later."""
    if not benchmarks.exists():
        return None
    text = benchmarks.read_text()
    begin, end = "<!-- accuracy:begin -->", "<!-- accuracy:end -->"
    if begin not in text or end not in text:
        return None
    section = text[text.index(begin):text.index(end)]
    run = re.search(r"^Run (.+?) on ", section, re.MULTILINE)
    verify = re.search(rf"^\| facetrail \| {re.escape(model_id)} \| ([^|]+) \| ([^|]+) \| ([^|]+) \| ([^|]+) \|",
                       section, re.MULTILINE)
    ident = re.search(r"^\| facetrail \| \d+ \| \d+ \| \d+ \| ([^|]+) \|", section, re.MULTILINE)
    if not (run and verify):
        return None
    return {"run": run.group(1), "accuracy": verify.group(1).strip(), "tar": verify.group(2).strip(),
            "failed": verify.group(4).strip(), "rank1": ident.group(1).strip() if ident else "-"}


def pipelines_report(results: list[PipelineResult], samples: dict[str, SampleResult], *, command: str,
                     versions: dict[str, str], reference: dict[str, str] | None, stride: int = 1) -> str:
    """The "Vision pipelines" section: one summary row per detector + recogniser combination, then the full
    tables of the pipelines measured in this run."""
    lines = [
        *_run_header(command, versions, stride),
        "| pipeline | template space | LFW View 2 accuracy | TAR @ FAR=1e-3 | failed to enrol (LFW) | rank-1 (LFW) "
        "| sample photos with a face missed | false detections (samples) | detect ms / photo | embed ms / face "
        "| same person nearer than others (samples) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_name = {r.name: r for r in results}
    for name in sorted(set(by_name) | set(samples), key=lambda n: (n != "dlib", n)):
        r, s = by_name.get(name), samples.get(name)
        sample_cells = (f"{s.photos_missing_faces} of {s.photos} | {s.false_detections} | {s.detect_ms:.0f} | "
                        f"{s.embed_ms:.1f} | {'yes' if s.separated else 'no'} (margin {s.margin:.3f})"
                        if s else "- | - | - | - | -")
        model_id = r.model_id if r else (s.model_id if s else "-")
        if r is not None:
            v, i = r.verification, r.identification
            lfw_cells = (f"{v.accuracy_mean:.2%} ± {v.accuracy_std:.2%} | {v.tar_at_far_1e3:.2%} | "
                         f"{r.failed_to_enrol} of {r.images} | {i.rank1:.2%}")
        elif name == "dlib" and reference is not None:
            lfw_cells = (f"{reference['accuracy']} | {reference['tar']} | {reference['failed']} | "
                         f"{reference['rank1']} (LFW figures: the {reference['run']} run of \"Recognition "
                         "quality on LFW\")")
        else:
            lfw_cells = "- | - | - | -"
        lines.append(f"| {name} | {model_id} | {lfw_cells} | {sample_cells} |")
    if results:
        lines += ["", "#### The pipelines measured on LFW in this run", "",
                  report(results, command=command, versions=versions, stride=stride).split("\n", 4)[4]]
    return "\n".join(lines).rstrip("\n") + "\n"
