"""The command line (Typer + Rich): `facetrail ...`."""
