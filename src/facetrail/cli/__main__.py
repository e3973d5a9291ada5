"""`python -m facetrail.cli` runs the command line."""

from facetrail.cli.main import main

main()
