"""Options shared by the commands that load a dataset and extract its features."""

from __future__ import annotations

import typer

EXTRACT_DEVICE = typer.Option(
    "auto", "--device", help="Where to extract features: auto (a GPU if present), cpu, cuda:N."
)
SKIP_BAD = typer.Option(
    False,
    "--skip-bad",
    help="Leave out images that cannot be decoded (listed); the dataset fingerprint then "
    "names the remaining images, so pass it to every command on that dataset.",
)



def report_skipped(manifest) -> None:
    """Say which undecodable images ``--skip-bad`` left out (stderr, one line each)."""
    for path in manifest.skipped:
        typer.echo(f"skipped unreadable image {path}", err=True)
