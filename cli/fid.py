"""``oodml fid``: the Fréchet distance between two image folders or two class lists."""

from __future__ import annotations

from pathlib import Path

import typer

from oodml.features.options import FeatureOptions
from oodml_cli.features import load
from oodml_cli.options import SKIP_BAD, argument, build, field_params, option, with_params
from oodml_cli.ui import Bars, say

MODE_HELP = (
    "samples: Gaussians over all images of each side (the usual FID); "
    "class-means: Gaussians over the class-mean features (ooDML), eps=1e-8 on the diagonals; "
    "for two folders, their subfolders are the classes."
)


@with_params(
    [argument("folders", list[Path] | None, "Two image folders (DIR1 DIR2); omit with "
              "--dataset.", None)],
    [option("dataset", str | None, None, "--dataset", help="Dataset name (omniglot, "
            "imagefolder, cub200, ...)."),
     option("root", Path | None, None, "--root", help="Dataset root folder or zip."),
     option("a", str | None, None, "--a", help="Comma-separated classes of side A."),
     option("b", str | None, None, "--b", help="Comma-separated classes of side B."),
     option("a_file", Path | None, None, "--a-file", help="File with side A classes."),
     option("b_file", Path | None, None, "--b-file", help="File with side B classes."),
     option("mode", str, "samples", "--mode", help=MODE_HELP),
     option("eps", float | None, None, "--eps", help="Added to both diagonals "
            "(default 0 samples, 1e-8 class-means)."),
     option("skip_bad", bool, False, "--skip-bad", help=SKIP_BAD.help)],
    field_params(FeatureOptions, defaults={"extractor": "inception"}),
)
def fid(**o) -> None:
    """Fréchet distance between two image folders, or between two class lists of a dataset.

    With --mode class-means each folder's subfolders are its classes."""
    from oodml.errors import ConfigError
    from oodml.stats.fid import class_list, fid_classes, fid_folders

    opts = build(FeatureOptions, o)
    folders = o["folders"] or []
    with Bars() as bars:
        if o["dataset"] is None:
            result = fid_folders(folders, mode=o["mode"], eps=o["eps"], features=opts,
                                 skip_bad=o["skip_bad"], progress=bars)
        else:
            if folders:
                raise ConfigError("give either two folders or --dataset, not both")
            if o["root"] is None:
                raise ConfigError("--dataset needs --root PATH (dataset folder or zip)")
            side_a = class_list(o["a"], o["a_file"], "--a")
            side_b = class_list(o["b"], o["b_file"], "--b")
            manifest = load(o["dataset"], o["root"], o["skip_bad"])
            result = fid_classes(manifest, side_a, side_b, mode=o["mode"], eps=o["eps"],
                                 features=opts, progress=bars)
    for path in result.skipped:
        say(f"skipped unreadable image {path}", err=True)
    say(f"{result.text}: {result.value:.10g}")


def register(app: typer.Typer) -> None:
    app.command("fid")(fid)
