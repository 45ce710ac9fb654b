"""Options shared by the commands that work on a service's settings and state
(``token``, ``mspc``): where the settings file is, and which state directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from plantwatch.settings import Settings, load_settings

__all__ = ["SettingsOption", "StateDirOption", "settings_with_state_dir"]

SettingsOption = Annotated[Path | None, typer.Option("--settings", help="TOML settings file")]
StateDirOption = Annotated[
    Path | None, typer.Option(help="the service's state directory (default from settings: var)")
]


def settings_with_state_dir(settings_file: Path | None, state_dir: Path | None) -> Settings:
    """Settings from the file and the environment, with ``--state-dir`` over them."""
    overrides: dict[str, object] = {}
    if state_dir is not None:
        overrides["state_dir"] = state_dir
    return load_settings(settings_file, **overrides)
