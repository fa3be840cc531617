"""``oodml features``: extract (or read from the cache) one feature vector per image."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from oodml.features.options import FeatureOptions
from oodml_cli.options import SKIP_BAD, argument, build, field_params, option, with_params
from oodml_cli.ui import Bars, say

FEATURE_PARAMS = field_params(FeatureOptions)


def load(dataset: str, root: Path, skip_bad: bool):
    """The dataset's manifest, saying which images ``--skip-bad`` left out."""
    from oodml.data import load_dataset

    manifest = load_dataset(dataset, root, skip_bad=skip_bad)
    for path in manifest.skipped:
        say(f"skipped unreadable image {path}", err=True)
    for link in manifest.skipped_links:
        say(f"skipped directory link {link}", err=True)
    return manifest


@with_params(
    [argument("dataset", str, "Dataset name (e.g. omniglot, imagefolder, cub200).")],
    [option("root", Path, ..., "--root", help="Dataset root folder or zip archive.")],
    FEATURE_PARAMS,
    [option("skip_bad", bool, False, "--skip-bad", help=SKIP_BAD.help)],
)
def features(**o) -> None:
    """Compute the pooled features of every image of DATASET, or read them from the cache."""
    from oodml.features import cache_paths

    opts = build(FeatureOptions, o)
    started = time.perf_counter()
    manifest = load(o["dataset"], o["root"], o["skip_bad"])
    with Bars() as bars:
        fs = opts.get(manifest, bars)
    npz, _ = cache_paths(opts.cache, fs.fingerprint, fs.extractor, fs.weights_sha256,
                         fs.content_id, fs.precision)
    seconds = time.perf_counter() - started
    say(f"{len(fs)} images, {fs.dim} dims, {fs.extractor} features ({fs.precision}) in {npz} "
        f"({seconds:.1f} s)")


def register(app: typer.Typer) -> None:
    app.command("features")(features)
