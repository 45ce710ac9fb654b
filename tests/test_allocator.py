"""plantwatch.allocator: freed memory is reused instead of faulted in again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A detector batch in miniature: temporaries of 0.8–4.8 MB, made and freed
# again and again. Prints the minor page faults per round.
_WORK = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from plantwatch.allocator import keep_freed_memory
    assert keep_freed_memory()
def batch():
    a = np.ones(100_000); b = a * 2.0
    c = np.stack([a, b, a, b, a, b]); d = c * 3.0
    return float(d.sum() + b.sum())
for _ in range(5):
    batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    batch()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def _faults_per_round(mode: str, **extra_env: str) -> float:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", _WORK, mode], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def test_temporaries_stop_faulting_once_freed_memory_is_kept() -> None:
    """On glibc (every Linux the project runs on) the setting must take effect and stop
    the faults; elsewhere it must say it changed nothing."""
    from plantwatch.allocator import keep_freed_memory

    if platform.libc_ver()[0] != "glibc":
        assert keep_freed_memory() is False
        return
    assert _faults_per_round("default") > 100  # the default allocator unmaps them
    assert _faults_per_round("keep") < 5


def test_an_operators_malloc_settings_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from plantwatch.allocator import keep_freed_memory

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert keep_freed_memory() is False
