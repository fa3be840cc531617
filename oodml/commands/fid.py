"""CLI: ``oodml fid``, the Fréchet distance between two image folders or two class lists."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from oodml.classstats import CLASS_MEANS_EPS
from oodml.commands.common import EXTRACT_DEVICE, SKIP_BAD, report_skipped
from oodml.errors import ConfigError

MODE_HELP = (
    "samples: Gaussians over all images of each side (the usual FID); "
    "class-means: Gaussians over the class-mean features (ooDML), eps=1e-8 on the diagonals; "
    "for two folders, their subfolders are the classes."
)


def parse_classes(inline: str | None, file: Path | None, option: str) -> list[str]:
    """Class names from a comma list and/or a file (one per line; blanks and '#' lines skipped)."""
    names = [c.strip() for c in (inline or "").split(",") if c.strip()]
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"cannot read class list {file}: {exc.strerror}; check the path"
            ) from None
        names += [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not names:
        raise ConfigError(f"no classes given for {option}; pass {option} CLS,CLS or {option}-file")
    if len(set(names)) != len(names):
        raise ConfigError(f"{option} lists a class twice; give each class once")
    return names


def folder_manifest(folder: Path):
    """All images under ``folder`` (recursively) as one pseudo-class named by its absolute path,
    so two folders with the same file names never share a feature-cache entry."""
    from oodml.data.base import is_image, list_dir, require_dir
    from oodml.data.manifest import DirSource, Manifest

    root = require_dir(folder, "a folder of images")
    paths = tuple(p for p in list_dir(root)[0] if is_image(p))
    if len(paths) < 2:
        raise ConfigError(f"{root} holds {len(paths)} image(s); a Fréchet distance needs >= 2")
    return Manifest(
        name="folder",
        root=root,
        source=DirSource(root),
        paths=paths,
        labels=(root.as_posix(),) * len(paths),
    )


def fid(
    folders: list[Path] | None = typer.Argument(
        None, help="Two image folders (DIR1 DIR2); omit when using --dataset."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset name (omniglot, imagefolder, cub200, ...)."
    ),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder or zip."),
    a: str | None = typer.Option(None, "--a", help="Comma-separated classes of side A."),
    b: str | None = typer.Option(None, "--b", help="Comma-separated classes of side B."),
    a_file: Path | None = typer.Option(None, "--a-file", help="File with side A classes."),
    b_file: Path | None = typer.Option(None, "--b-file", help="File with side B classes."),
    mode: str = typer.Option("samples", "--mode", help=MODE_HELP),
    eps: float | None = typer.Option(
        None, "--eps", min=0.0, help="Added to both diagonals (default 0 samples, 1e-8 means)."
    ),
    extractor: str = typer.Option(
        "efficientnet-lite0", "--extractor", help="efficientnet-lite0, inception or resnet50."
    ),
    weights: Path | None = typer.Option(None, "--weights", help="Extractor weights file."),
    device: str = EXTRACT_DEVICE,
    cache: Path | None = typer.Option(
        None,
        "--cache",
        help="Feature cache folder (dataset default: $OODML_CACHE or ~/.cache/oodml; "
        "folders: not cached unless given).",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Images per batch (default: 64 on CUDA, 8 on CPU)."
    ),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Decoding processes."),
    skip_bad: bool = SKIP_BAD,
) -> None:
    """Fréchet distance between two image folders, or between two class lists of a dataset.

    With --mode class-means each folder's subfolders are its classes."""
    from oodml.classstats import MODES

    if mode not in MODES:
        raise ConfigError(f"unknown --mode {mode!r}; choose one of: {', '.join(MODES)}")
    run = dict(
        extractor=extractor,
        device=device,
        batch_size=batch_size,
        num_workers=workers,
        weights=weights,
    )
    if dataset is None:
        value, text = _folders(folders or [], mode, eps, cache, run, skip_bad)
    else:
        if folders:
            raise ConfigError("give either two folders or --dataset, not both")
        if root is None:
            raise ConfigError("--dataset needs --root PATH (dataset folder or zip)")
        side_a = parse_classes(a, a_file, "--a")
        side_b = parse_classes(b, b_file, "--b")
        value, text = _dataset(dataset, root, side_a, side_b, mode, eps, cache, run, skip_bad)
    typer.echo(f"{text}: {value:.10g}")


def _folders(
    folders: list[Path], mode: str, eps, cache, run: dict, skip_bad: bool
) -> tuple[float, str]:
    from oodml.classstats import ClassStats
    from oodml.features import get_features
    from oodml.frechet import frechet_distance_samples

    if len(folders) != 2:
        raise ConfigError(f"give exactly two image folders (got {len(folders)}) or --dataset")
    with tempfile.TemporaryDirectory(prefix="oodml-fid-") as tmp:
        where = cache if cache is not None else Path(tmp)
        if mode == "samples":
            manifests = [folder_manifest(f) for f in folders]
        else:
            manifests = [class_folders(f, skip_bad) for f in folders]
        feats = [get_features(m, cache_dir=where, **run) for m in manifests]
    if mode == "samples":
        x1, x2 = (f.features for f in feats)
        value = frechet_distance_samples(x1, x2, eps=eps or 0.0)
        n1, n2 = len(x1), len(x2)
    else:
        means = [ClassStats.from_features(f.features, f.labels).means for f in feats]
        n1, n2 = (len(m) for m in means)
        if min(n1, n2) < 2:
            raise ConfigError(
                f"class-means needs at least 2 class subfolders per folder, got {n1} and {n2}"
            )
        value = frechet_distance_samples(
            means[0], means[1], eps=CLASS_MEANS_EPS if eps is None else eps
        )
    unit = "images" if mode == "samples" else "classes"
    text = (
        f"{mode} FID ({run['extractor']}) {folders[0]} [{n1} {unit}] vs "
        f"{folders[1]} [{n2} {unit}]"
    )
    return value, text


def class_folders(folder: Path, skip_bad: bool):
    """``folder/<class>/<image>`` as a dataset whose class names carry the folder's absolute
    path, so two folders with the same class names never share a feature-cache entry."""
    from dataclasses import replace

    from oodml.data import load_dataset

    manifest = load_dataset("imagefolder", folder, skip_bad=skip_bad)
    report_skipped(manifest)
    root = Path(manifest.root).resolve().as_posix()
    return replace(manifest, labels=tuple(f"{root}::{c}" for c in manifest.labels))


def _dataset(
    name: str,
    root: Path,
    side_a: list[str],
    side_b: list[str],
    mode: str,
    eps,
    cache,
    run: dict,
    skip_bad: bool,
) -> tuple[float, str]:
    from oodml.classstats import ClassStats
    from oodml.data import load_dataset
    from oodml.features import default_cache_dir, get_features

    manifest = load_dataset(name, root, skip_bad=skip_bad)
    report_skipped(manifest)
    unknown = sorted(set(side_a + side_b).difference(manifest.class_counts))
    if unknown:
        raise ConfigError(
            f"{len(unknown)} class(es) not in dataset {name!r} at {root}: {unknown[:5]}; "
            "check the names against the dataset's class folders"
        )
    fs = get_features(manifest, cache_dir=cache or default_cache_dir(), **run)
    stats = ClassStats.from_features(fs.features, fs.labels)
    value = stats.distance(side_a, side_b, mode=mode, eps=eps)
    text = f"{mode} FID ({fs.extractor}) {len(side_a)} vs {len(side_b)} classes of {name}"
    return value, text


def register(app: typer.Typer) -> None:
    """Add the ``fid`` command to the main app."""
    app.command("fid")(fid)
