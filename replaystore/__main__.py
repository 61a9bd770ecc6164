"""``python -m replaystore`` runs the command line."""

from .cli import main

main(prog_name="replaystore")
