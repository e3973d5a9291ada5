"""`python -m facetrail.cli` runs the command line."""

from facetrail.cli.launch import main

main()
