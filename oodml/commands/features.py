"""CLI: ``oodml features`` extracts (or reads from the cache) one feature vector per image."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from oodml.commands.common import EXTRACT_DEVICE, SKIP_BAD, report_skipped


def features(
    dataset: str = typer.Argument(..., help="Dataset name (e.g. omniglot, imagefolder, cub200)."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder or zip archive."),
    extractor: str = typer.Option(
        "efficientnet-lite0",
        "--extractor",
        help="Feature extractor: efficientnet-lite0, inception or resnet50.",
    ),
    cache: Path | None = typer.Option(
        None, "--cache", help="Cache folder (default: $OODML_CACHE or ~/.cache/oodml)."
    ),
    device: str = EXTRACT_DEVICE,
    weights: Path | None = typer.Option(
        None, "--weights", help="Weights file (state dict); default: built-in or torch hub cache."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Images per batch (default: 64 on CUDA, 8 on CPU)."
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0, help="Decoding worker processes (default: min(4, CPUs))."
    ),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision (CUDA only)."),
    skip_bad: bool = SKIP_BAD,
) -> None:
    """Compute the pooled features of every image of DATASET, or read them from the cache."""
    from oodml.data import load_dataset
    from oodml.features import cache_paths, default_cache_dir, get_features

    started = time.perf_counter()
    manifest = load_dataset(dataset, root, skip_bad=skip_bad)
    report_skipped(manifest)
    cache_dir = cache if cache is not None else default_cache_dir()
    fs = get_features(
        manifest,
        extractor,
        cache_dir=cache_dir,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
        weights=weights,
        amp=amp,
    )
    npz, _ = cache_paths(cache_dir, fs.fingerprint, fs.extractor, fs.weights_sha256)
    seconds = time.perf_counter() - started
    typer.echo(
        f"{len(fs)} images, {fs.dim} dims, {fs.extractor} features in {npz} ({seconds:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    """Add the ``features`` command to the main app."""
    app.command("features")(features)
