"""CLI: ``oodml sweep`` runs methods x splits x seeds locally or on a Ray cluster."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from oodml.errors import OodmlError


def register(app: typer.Typer) -> None:
    """Add ``oodml sweep`` to the main app."""

    @app.command("sweep")
    def sweep(
        config: Path = typer.Argument(..., help="Sweep TOML: split file, root, methods, seeds."),
        backend: str = typer.Option("local", help="local (this process) or ray."),
        address: str = typer.Option(
            None, help="Ray cluster: ray://host:port or auto; default starts a local Ray."
        ),
        gpus_per_run: float = typer.Option(0.0, help="GPUs each run asks Ray for."),
        cpus_per_run: float = typer.Option(1.0, help="CPUs each run asks for (torch threads)."),
        retries: int = typer.Option(2, help="Retries of a failed run before it is reported."),
    ) -> None:
        """Train and evaluate every (method, split, seed) of CONFIG; re-running skips finished runs.

        Each finished run writes its own result file atomically; the sweep then merges them
        into RESULTS/results.parquet and results.csv.
        """
        from oodml.sweep.config import load_config
        from oodml.sweep.run import run_sweep

        console = Console(stderr=True)
        outcome = run_sweep(
            load_config(config),
            backend=backend,
            address=address,
            cpus_per_run=cpus_per_run,
            gpus_per_run=gpus_per_run,
            retries=retries,
            console=console,
        )
        s = outcome.state
        console.print(
            f"sweep: {s.done} run(s) done, {s.skipped} skipped (finished before), "
            f"{len(s.failed)} failed; {len(outcome.table)} rows in "
            f"{Path(outcome.specs[0].results_dir) / 'results.parquet'}",
            highlight=False,
        )
        if s.failed:
            raise OodmlError(f"{len(s.failed)} run(s) failed after retries; see the lines above")
