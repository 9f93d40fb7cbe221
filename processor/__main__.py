"""``python -m processor`` runs the command line."""

from processor.cli import entry

entry()
