"""``python -m plantwatch`` runs the CLI; importing :mod:`plantwatch.cli` has
registered every command on ``app`` by then."""

from plantwatch.cli import app

if __name__ == "__main__":
    app()
