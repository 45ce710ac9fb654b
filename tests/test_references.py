"""Every file the project's code, tests and docs name exists in the project.

Code and tests once cited architecture, domain and style documents that a clone
of the project did not have. This walks every tracked source, doc and
config file for names of ``.md`` and ``.py`` files and checks each one is there
(relative to the repository, or to the citing file's folder for Markdown links).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITED = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w.-]*\w\.(?:md|py))(?![\w/])")
# Names that are not files of this project: the NAB project's own sources (cited where
# its scorer is reproduced), generated code, placeholders in examples and templates.
NOT_OURS = re.compile(r"^nab/|(^|/)(x|NAME|bad|foo|example|setup)\.(md|py)$|_pb2\.py$|"
                      r"-short-name\.md$|^(README|CHANGELOG|LICENSE)\.md$|^__init__\.py$|"
                      r"^__main__\.py$|^conftest\.py$")


def tracked() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.split()
    return [ROOT / f for f in out if f.endswith((".py", ".md", ".yaml", ".toml"))
            or f == "Makefile"]


def exists(ref: str, citing: Path) -> bool:
    return (ROOT / ref).exists() or (citing.parent / ref).exists()


def test_every_cited_file_exists() -> None:
    files = tracked()
    assert len(files) > 100  # the walk found the project
    missing: list[str] = []
    for path in files:
        text = path.read_text(errors="replace")
        for lineno, line in enumerate(text.splitlines(), 1):
            for match in CITED.finditer(line):
                ref = match.group(1)
                if "/" not in ref and not ref.endswith(".md"):
                    continue  # a bare module name (``suite.py``) is said in context
                if NOT_OURS.search(ref) or exists(ref, path):
                    continue
                missing.append(f"{path.relative_to(ROOT)}:{lineno}: {ref}")
    assert not missing, "files cited but not in the project:\n" + "\n".join(missing)
