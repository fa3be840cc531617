"""The options the Omniglot-ladder benchmarks share: the published greedy split file and the
dataset it was made from (``$OODML_DATA`` or ``../shared/data``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = "splits/omniglot_small1_efficientnet-lite0_class-means_greedy.json"


def add_ladder_args(ap: argparse.ArgumentParser) -> None:
    """``--splitfile`` (default: the published greedy ladder) and ``--root`` (the subset)."""
    ap.add_argument("--splitfile", type=Path, default=ROOT / PUBLISHED)
    data = os.environ.get("OODML_DATA", str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--root", type=Path,
                    default=Path(data) / "omniglot" / "images_background_small1.zip")
