"""The Intel recogniser in OpenVINO's default precision (bf16 on a CPU that has it, f32 elsewhere) against f32, on
the same aligned crops of LFW View 2's images (`pairs.txt`, 7,701 images; the face nearest each photo's centre).

OpenVINO chooses the precision by the CPU, so one collection may hold templates of both: this measures whether
that matters. Reported for each: 10-fold verification accuracy and TAR at FAR=1e-3 (as "Recognition quality on
LFW"), the false-match rate at the shipped calibration's band thresholds over every comparison of two different
people's templates, the recogniser's processor time per face; and how far apart one face's two templates are.

    nice .venv/bin/python -m bench.recogniser_precision [--lfw ../shared/data/lfw]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from rich.progress import Progress

from bench.load import ROOT, machine
from facetrail.evaluation import lfw
from facetrail.evaluation.metrics import verification
from facetrail.evaluation.pipelines import central
from facetrail.media.image import decode_image
from facetrail.vision import intel_reid, model_files
from facetrail.vision.composite import YuNetIntelBackend
from facetrail.vision.runtimes import openvino

CHUNK = 500


def requests() -> dict[str, Any]:
    """An inference request of the recogniser compiled as the product compiles it, and one forced to f32."""
    core = openvino().Core()
    model = core.read_model(str(model_files.verified(intel_reid.MODEL_XML)),
                            str(model_files.verified(intel_reid.MODEL_BIN)))
    made = {}
    for name, extra in (("default", {}), ("f32", {"INFERENCE_PRECISION_HINT": "f32"})):
        compiled = core.compile_model(model, "CPU", {**intel_reid.COMPILE_OPTIONS, "INFERENCE_NUM_THREADS": 1,
                                                     **extra})
        made[name] = compiled.create_infer_request()
    made["default precision"] = (core.compile_model(model, "CPU", intel_reid.COMPILE_OPTIONS)
                                 .get_property("INFERENCE_PRECISION_HINT").get_type_name())
    return made


def impostor_fmrs(vectors: NDArray[np.float32], people: NDArray[np.str_],
                  thresholds: dict[str, float]) -> tuple[dict[str, float], int]:
    """The share of comparisons of two different people's templates at or under each threshold, and how many."""
    counts = dict.fromkeys(thresholds, 0)
    total = 0
    for lo in range(0, len(vectors), CHUNK):
        block = vectors[lo:lo + CHUNK]
        distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * block @ vectors.T))
        rows = np.arange(lo, lo + len(block))[:, None]
        different = (people[lo:lo + CHUNK, None] != people[None, :]) & (rows < np.arange(len(vectors))[None, :])
        chosen = distances[different]
        total += len(chosen)
        for band, threshold in thresholds.items():
            counts[band] += int(np.count_nonzero(chosen <= threshold))
    return {band: count / total for band, count in counts.items()}, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    args = parser.parse_args()
    started = datetime.now(UTC)
    pairs = lfw.read_pairs(args.lfw / "pairs.txt")
    keys = lfw.pair_images(pairs)
    backend = YuNetIntelBackend()
    made = requests()
    default_precision = made.pop("default precision")
    vectors = {name: np.full((len(keys), backend.template_dim), np.nan, np.float32) for name in made}
    seconds = dict.fromkeys(made, 0.0)
    with Progress() as progress:
        task = progress.add_task("LFW View 2 images", total=len(keys))
        for i, key in enumerate(keys):
            pixels = decode_image(lfw.image_path(args.lfw, key).read_bytes(), max_pixels=64_000_000).pixels
            found = backend.detect(pixels)
            progress.advance(task)
            if not found:
                continue
            pick = found[central([(d.box.left, d.box.top, d.box.right, d.box.bottom) for d in found],
                                 pixels.shape[1], pixels.shape[0])]
            crop = backend.embedder.aligned(Image.fromarray(pixels), pick)
            batch = intel_reid.network_input(crop)
            for name, request in made.items():
                before = time.thread_time()
                request.infer({0: batch})
                vector = np.array(request.get_output_tensor(0).data, dtype=np.float32).reshape(-1)
                seconds[name] += time.thread_time() - before
                vectors[name][i] = vector / np.linalg.norm(vector)
    calibration = backend.calibration()
    assert calibration is not None
    thresholds = {band.value: value for band, value in calibration.thresholds.items()}
    enrolled = ~np.isnan(vectors["f32"][:, 0])
    people = np.array([lfw.identity(key) for key in keys])
    where = {key: i for i, key in enumerate(keys)}
    a, b = np.array([where[p.a] for p in pairs]), np.array([where[p.b] for p in pairs])
    same, folds = np.array([p.same for p in pairs]), np.array([p.fold for p in pairs])
    info = machine()
    lines = [
        f"Run {started:%Y-%m-%d %H:%M} UTC on {info['cpu']}, revision {info['revision']}: OpenVINO's "
        f"default precision here is {default_precision}; {int(enrolled.sum()):,} of {len(keys):,} images with a face.",
        "",
        f"| precision | accuracy | TAR at FAR=1e-3 | FMR at {' / '.join(thresholds)} | ms of processor time a face |",
        "|---|---|---|---|---|",
    ]
    for name, templates in vectors.items():
        distances = np.linalg.norm(templates[a] - templates[b], axis=1)
        checked = verification(np.where(np.isnan(distances), np.inf, distances), same, folds)
        fmrs, comparisons = impostor_fmrs(templates[enrolled], people[enrolled], thresholds)
        label = f"default ({default_precision})" if name == "default" else name
        lines.append(f"| {label} | {checked.accuracy_mean:.2%} ± {checked.accuracy_std:.2%} | "
                     f"{checked.tar_at_far_1e3:.2%} | {' / '.join(f'{v:.2e}' for v in fmrs.values())} "
                     f"({comparisons:,} comparisons) | {seconds[name] / enrolled.sum() * 1000:.1f} |")
    apart = np.linalg.norm(vectors["default"][enrolled] - vectors["f32"][enrolled], axis=1)
    lines += ["", f"One face's two templates: {np.median(apart):.4f} apart at the median, "
                  f"{np.percentile(apart, 99):.4f} at the 99th percentile, {apart.max():.4f} at most; the band "
                  f"thresholds are {', '.join(f'{v:.4f}' for v in thresholds.values())}."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
