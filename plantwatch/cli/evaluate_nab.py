"""``plantwatch evaluate nab``: score detectors on the Numenta Anomaly Benchmark.

Two sources of anomaly scores:

* ``--results DIR``: a NAB ``results`` directory of published (or any) raw
  detector outputs, ``DIR/<detector>/<category>/<detector>_<file>.csv``.
* otherwise plantwatch's own univariate detectors, run over every corpus
  file through the adapters of ``detectors.evaluation.univariate``.

Either way the scores go through :func:`detectors.evaluation.nab.score_corpus`
and are shown beside NAB's published scoreboard. Attach with
``evaluate_app.command("nab")(nab)``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated

import numpy as np
import numpy.typing as npt
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from detectors.evaluation.nab import CostProfile, FileOutput, NabResult, score_corpus
from detectors.evaluation.nab_data import (
    NabDataError,
    find_detectors,
    load_corpus,
    load_profiles,
    load_published_scores,
    load_results,
    load_windows,
)

__all__ = [
    "ADAPTERS_MODULE",
    "DEFAULT_DATA_DIR",
    "SCOREBOARD",
    "NabAdapter",
    "nab",
    "published_scores",
    "score_detectors",
    "score_results",
]

NabAdapter = Callable[[npt.NDArray[np.int64], npt.NDArray[np.float64]], npt.NDArray[np.float64]]
"""A univariate detector over one whole file: (epoch ms, values) -> scores in [0, 1]."""

ProgressCallback = Callable[[str, str], None]
"""Called as ``(detector, file)`` after each file is scored or read."""

ADAPTERS_MODULE = "detectors.evaluation.univariate"
"""Where plantwatch's univariate detectors offer ``NAB_DETECTORS: dict[str, NabAdapter]``."""

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
"""``<repo>/../shared/data/nab``: where the NAB checkout sits beside the repository."""

SCOREBOARD: dict[str, tuple[str, float, float, float]] = {
    "ARTime": ("ARTime", 74.9, 65.1, 80.4),
    "numenta": ("Numenta HTM", 70.5, 62.6, 75.2),
    "contextOSE": ("CAD OSE", 69.9, 67.0, 73.2),
    "earthgeckoSkyline": ("earthgecko Skyline", 58.2, 46.2, 63.9),
    "knncad": ("KNN CAD", 58.0, 43.4, 64.8),
    "relativeEntropy": ("Relative Entropy", 54.6, 47.6, 58.8),
    "randomCutForest": ("Random Cut Forest", 51.7, 38.4, 59.7),
    "twitterADVec": ("Twitter ADVec", 47.1, 33.6, 53.5),
    "windowedGaussian": ("Windowed Gaussian", 39.6, 20.9, 47.4),
    "skyline": ("Etsy Skyline", 35.7, 27.1, 44.5),
    "bayesChangePt": ("Bayesian Changepoint", 17.7, 3.2, 32.2),
    "expose": ("EXPoSE", 16.4, 3.2, 26.9),
    "random": ("Random", 11.0, 1.2, 19.5),
    "null": ("Null", 0.0, 0.0, 0.0),
}
"""NAB's README scoreboard (v1.0 results): id -> (name, standard, low FP, low FN)."""

_EXTRA_NAMES = {"htmjava": "HTM Java", "numentaTM": "NumentaTM HTM"}
_PROFILE_KEYS = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


def _json_key(profile: str) -> str:
    return profile.lower()


def published_scores(data_dir: Path) -> dict[str, dict[str, float]]:
    """Published normalised scores per NAB detector id and profile.

    NAB's README scoreboard (:data:`SCOREBOARD`), completed with the detectors
    only found in the checkout's ``results_scores/final_results.json`` (HTM
    Java, NumentaTM). The scoreboard wins where both have a detector: that file
    holds single runs (NuPIC 0.5.6 for ``numenta``, one seed for ``random``)
    where the scoreboard reports NuPIC 1.0 and the mean over seeds.
    """
    scores = {
        detector: dict(zip(_PROFILE_KEYS, (standard, low_fp, low_fn), strict=True))
        for detector, (_, standard, low_fp, low_fn) in SCOREBOARD.items()
    }
    for detector, profile_scores in load_published_scores(data_dir).items():
        scores.setdefault(detector, profile_scores)
    return scores


def score_results(
    results_dir: Path,
    data_dir: Path,
    detectors: Sequence[str] | None = None,
    on_file: ProgressCallback | None = None,
) -> dict[str, NabResult]:
    """Score raw detector outputs in a NAB ``results`` directory, one result per detector."""
    windows = load_windows(data_dir)
    profiles = load_profiles(data_dir)
    names = list(detectors) if detectors else find_detectors(results_dir)
    results: dict[str, NabResult] = {}
    for detector in names:
        outputs = load_results(results_dir, detector)
        unknown = sorted(set(outputs) - set(windows))
        if unknown:
            raise NabDataError(results_dir / detector, f"results for unlabelled files {unknown}")
        if on_file is not None:
            for name in outputs:
                on_file(detector, name)
        results[detector] = score_corpus(outputs, windows, profiles)
    return results


def score_detectors(
    registry: Mapping[str, NabAdapter],
    data_dir: Path,
    profiles: Sequence[CostProfile] | None = None,
    on_file: ProgressCallback | None = None,
) -> dict[str, NabResult]:
    """Run every adapter of ``registry`` over the whole NAB corpus and score it.

    Each adapter sees one file at a time (timestamps in epoch milliseconds,
    values) and must return one finite score in [0, 1] per row.
    """
    windows = load_windows(data_dir)
    chosen = tuple(profiles) if profiles is not None else load_profiles(data_dir)
    corpus = load_corpus(data_dir, sorted(windows))
    results: dict[str, NabResult] = {}
    for detector, adapter in registry.items():
        outputs: dict[str, FileOutput] = {}
        for name, series in corpus.items():
            times_ms = series.timestamps.astype(np.int64)
            scores = np.asarray(adapter(times_ms, series.values.copy()), dtype=np.float64)
            if scores.shape != series.values.shape:
                raise ValueError(
                    f"detector {detector!r} on {name}: {scores.shape} scores for "
                    f"{series.values.shape[0]} rows"
                )
            if not np.all(np.isfinite(scores)) or np.any((scores < 0.0) | (scores > 1.0)):
                raise ValueError(
                    f"detector {detector!r} on {name}: scores must be finite and in [0, 1]"
                )
            outputs[name] = FileOutput(timestamps=series.timestamps, scores=scores)
            if on_file is not None:
                on_file(detector, name)
        results[detector] = score_corpus(outputs, windows, chosen)
    return results


def _summary(result: NabResult) -> dict[str, float]:
    return {_json_key(name): p.normalized_score for name, p in result.profiles.items()}


def _as_json(results: Mapping[str, NabResult]) -> dict[str, object]:
    detectors: dict[str, object] = {}
    files: list[dict[str, object]] = []
    for detector, result in results.items():
        entry: dict[str, object] = dict(_summary(result))
        entry["thresholds"] = {_json_key(n): p.threshold for n, p in result.profiles.items()}
        entry["raw_scores"] = {_json_key(n): p.raw_score for n, p in result.profiles.items()}
        detectors[detector] = entry
        for name, profile in result.profiles.items():
            for f in profile.files:
                files.append(
                    {
                        "detector": detector,
                        "profile": _json_key(name),
                        "file": f.file,
                        "threshold": profile.threshold,
                        "score": f.score,
                        "tp": f.tp,
                        "fp": f.fp,
                        "fn": f.fn,
                        "tn": f.tn,
                        "windows": f.windows,
                        "windows_detected": f.windows_detected,
                    }
                )
    first = next(iter(results.values()))
    return {"summary": _summary(first), "detectors": detectors, "files": files}


def _display_name(detector: str) -> str:
    if detector in SCOREBOARD:
        return SCOREBOARD[detector][0]
    return _EXTRA_NAMES.get(detector, detector)


def _table(results: Mapping[str, NabResult], published: Mapping[str, Mapping[str, float]]) -> Table:
    table = Table(title="NAB v1.1 (normalised: perfect 100, null detector 0)")
    table.add_column("Detector")
    table.add_column("Source")
    for header in ("Standard", "Reward low FP", "Reward low FN"):
        table.add_column(header, justify="right")
    rows: list[tuple[float, str, str, list[str], str]] = []
    for detector, result in results.items():
        ours = result.normalized()
        cells = [f"{ours[key]:.2f}" if key in ours else "-" for key in _PROFILE_KEYS]
        name = _display_name(detector)
        rows.append((ours.get("standard", 0.0), name, "scored here", cells, "bold"))
    for detector, theirs in published.items():
        cells = [f"{theirs[key]:.1f}" if key in theirs else "-" for key in _PROFILE_KEYS]
        name = _display_name(detector)
        rows.append((theirs.get("standard", 0.0), name, "published", cells, "dim"))
    for _, name, source, cells, style in sorted(rows, key=lambda row: -row[0]):
        table.add_row(name, source, *cells, style=style)
    return table


def _fail(console: Console, message: str) -> typer.Exit:
    console.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(2)


def nab(
    data: Annotated[
        Path,
        typer.Option("--data", help="NAB checkout (data/, labels/, config/, results_scores/)"),
    ] = DEFAULT_DATA_DIR,
    results: Annotated[
        Path | None,
        typer.Option("--results", help="score the raw outputs of a NAB results directory"),
    ] = None,
    detector: Annotated[
        list[str] | None,
        typer.Option("--detector", help="score only this detector (repeatable)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Score detectors on the Numenta Anomaly Benchmark, beside its published scoreboard."""
    err = Console(stderr=True)
    if not (data / "labels" / "combined_windows.json").is_file():
        raise _fail(
            err, f"{data}: not a NAB checkout (no labels/combined_windows.json); give --data"
        )
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
    )
    try:
        with progress:
            if results is not None:
                names = detector or find_detectors(results)
                total = sum(len(list((results / n).glob("*/*.csv"))) for n in names)
                task = progress.add_task("reading results", total=total)
                scored = score_results(
                    results, data, names, on_file=lambda _d, _f: progress.advance(task)
                )
            else:
                try:
                    adapters = importlib.import_module(ADAPTERS_MODULE)
                except ImportError as exc:
                    raise _fail(
                        err,
                        "plantwatch's NAB adapters are not available "
                        f"({ADAPTERS_MODULE}: {exc}); "
                        "score a NAB results directory with --results DIR instead",
                    ) from exc
                registry: dict[str, NabAdapter] = dict(adapters.NAB_DETECTORS)
                if detector:
                    missing = sorted(set(detector) - set(registry))
                    if missing:
                        raise _fail(
                            err, f"unknown detector(s) {missing}; available: {sorted(registry)}"
                        )
                    registry = {name: registry[name] for name in detector}
                files = len(load_windows(data))
                task = progress.add_task("running detectors", total=files * len(registry))
                scored = score_detectors(
                    registry, data, on_file=lambda _d, _f: progress.advance(task)
                )
    except (NabDataError, ValueError, KeyError) as exc:
        raise _fail(err, str(exc)) from exc
    if not scored:
        raise _fail(err, "nothing to score")

    if as_json:
        typer.echo(json.dumps(_as_json(scored)))
        return
    Console().print(_table(scored, published_scores(data)))
