"""Alignment checks for the vision pipelines on LFW View 1 test pairs (`pairsDevTest.txt`, 1,000 pairs).

Each recogniser must be fed the alignment it was trained with; this measures the choices made in
`facetrail.vision` rather than assuming them:

* YuNet + Intel 0095: similarity fit of YuNet's five points onto Open Model Zoo's reference points (the SphereFace
  96x112 layout scaled to 128x128: what the product uses) against the ArcFace 112x112 template scaled to 128.
* YuNet + dlib ResNet: dlib's 5-point shape predicted inside YuNet's box (what the product uses) against dlib's
  own HOG detector and shape (the `dlib` pipeline), on the same images.

The accuracy is at the best threshold on these same pairs (which flatters every row equally; 1,000 pairs, so one
pair is 0.1 points): a comparison of alignments, not a verification result (see "Vision pipelines").

    nice .venv/bin/python -m bench.vision_alignment [--lfw ../shared/data/lfw] [--only intel|dlib]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.load import ROOT
from facetrail.evaluation import lfw
from facetrail.evaluation.pipelines import central
from facetrail.media.image import decode_image
from facetrail.vision.alignment import ARCFACE_TEMPLATE_112
from facetrail.vision.backend import VisionBackend, VisionConfig, load_backend
from facetrail.vision.composite import YuNetIntelBackend
from facetrail.vision.intel_reid import IntelReidEmbedder
from facetrail.vision.types import Detection

Embed = Callable[[np.ndarray, list[Detection]], list[np.ndarray]]


def best_accuracy(vectors: dict[str, np.ndarray], pairs: list[lfw.Pair]) -> float:
    """Accuracy at the best threshold; a pair with an image of no face counts as a non-match."""
    dist = np.array([np.linalg.norm(vectors[p.a] - vectors[p.b]) if p.a in vectors and p.b in vectors else np.inf
                     for p in pairs])
    same = np.array([p.same for p in pairs])
    return max(float(((dist <= t) == same).mean()) for t in np.unique(dist[np.isfinite(dist)]))


def measure(root: Path, backend: VisionBackend, variants: dict[str, Embed]) -> tuple[dict[str, float], int, float]:
    pairs = lfw.read_pairs(root / "pairsDevTest.txt")
    keys = lfw.pair_images(pairs)
    vectors: dict[str, dict[str, np.ndarray]] = {name: {} for name in variants}
    missed = 0
    started = time.perf_counter()
    for key in keys:
        pixels = decode_image(lfw.image_path(root, key).read_bytes(), max_pixels=64_000_000).pixels
        found = backend.detect(pixels)
        if not found:
            missed += 1
            continue
        pick = found[central([(d.box.left, d.box.top, d.box.right, d.box.bottom) for d in found], pixels.shape[1],
                             pixels.shape[0])]
        for name, embed in variants.items():
            vectors[name][key] = embed(pixels, [pick])[0]
    seconds = time.perf_counter() - started
    return {name: best_accuracy(v, pairs) for name, v in vectors.items()}, missed, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lfw", type=Path, default=ROOT.parent / "shared" / "data" / "lfw")
    parser.add_argument("--only", choices=["intel", "dlib"])
    args = parser.parse_args()
    rows = []
    if args.only in (None, "intel"):
        intel = YuNetIntelBackend()
        arcface = IntelReidEmbedder(reference=[(x * 128 / 112, y * 128 / 112) for x, y in ARCFACE_TEMPLATE_112])
        found, missed, seconds = measure(args.lfw, intel, {
            "YuNet-s + Intel 0095, Open Model Zoo reference points (shipped)": intel.embed,
            "YuNet-s + Intel 0095, ArcFace template scaled to 128 px": arcface.embed})
        rows += [(name, acc, missed, seconds) for name, acc in found.items()]
    if args.only in (None, "dlib"):
        for name, model in (("YuNet-s box + dlib 5-point shape + dlib ResNet (shipped)", "yunet-dlib"),
                            ("dlib HOG + dlib 5-point shape + dlib ResNet", "dlib")):
            backend = load_backend(VisionConfig(vision_model=model))
            found, missed, seconds = measure(args.lfw, backend, {name: backend.embed})
            rows += [(name, acc, missed, seconds) for name, acc in found.items()]
    print("| alignment | accuracy (best threshold) | images with no face | seconds |")
    print("|---|---|---|---|")
    for name, acc, missed, seconds in rows:
        print(f"| {name} | {acc:.1%} | {missed} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
