"""The bundled demo: sample photos and the `facetrail demo` set-up."""

from pathlib import Path

SAMPLES = Path(__file__).with_name("samples")
QUERY_PHOTO = Path(__file__).with_name("query") / "obama2.jpg"
