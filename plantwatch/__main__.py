"""``python -m plantwatch`` runs the CLI."""

from plantwatch.cli import app

app()
