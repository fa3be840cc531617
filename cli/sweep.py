"""``oodml sweep``: methods x splits x seeds locally or on a Ray cluster."""

from __future__ import annotations

from pathlib import Path

import typer

from oodml.errors import OodmlError
from oodml_cli.ui import say


def sweep(
    config: Path = typer.Argument(..., help="Sweep TOML: split file, root, methods, seeds."),
    backend: str = typer.Option("local", "--backend", help="local (this process) or ray."),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster HOST:PORT, ray://HOST:PORT or auto (default: "
        "start a local Ray); it must accept a connection within 5 s and answer as Ray within "
        "10 s more, else the sweep stops with an error."),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", help="GPUs each run asks Ray for."),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run",
                                       help="CPUs each run asks for (torch threads)."),
    retries: int = typer.Option(2, "--retries", help="Retries of a failed run before it is "
                                "reported (at most 100)."),
) -> None:
    """Train and evaluate every (method, split, seed) of CONFIG; re-running skips finished runs.

    Each finished run writes its own result file atomically; the sweep then merges them
    into RESULTS/results.parquet and results.csv. A loss or miner given as an import path
    'package.module:Class' imports that module (running its code) on every worker."""
    from rich.console import Console
    from rich.live import Live

    from oodml.sweep.config import load_config
    from oodml.sweep.run import SweepRun, run_sweep

    how = SweepRun(backend=backend, address=address, cpus_per_run=cpus_per_run,
                   gpus_per_run=gpus_per_run, retries=retries)
    cfg = load_config(config)
    console = Console(stderr=True)
    if console.is_terminal:
        line = _StateLine()
        with Live(line, console=console, refresh_per_second=1):
            outcome = run_sweep(cfg, how, on_update=line.set)
    else:
        outcome = run_sweep(cfg, how, on_update=_LogLine().set)
    s = outcome.state
    for key, n in sorted(s.retried.items()):
        say(f"retried {key} {n} time(s)", err=True)
    for key, err in sorted(s.failed.items()):
        say(f"failed {key}: {err}", err=True)
    say(f"sweep: {s.done} run(s) done, {s.skipped} skipped (finished before), "
        f"{len(s.failed)} failed; {len(outcome.table)} rows in "
        f"{Path(cfg.results) / 'results.parquet'}", err=True)
    if s.failed:
        raise OodmlError(f"{len(s.failed)} run(s) failed after retries; see the lines above")


class _StateLine:
    """The live status line, redrawn every second so the ETA moves during long runs."""

    def __init__(self) -> None:
        self.state = None

    def set(self, state) -> None:
        self.state = state

    def __rich__(self):
        from rich.text import Text

        return Text(self.state.line() if self.state else "starting sweep")


class _LogLine:
    """Off a terminal (a log file, CI): the status as whole lines, one per finished run."""

    def __init__(self) -> None:
        self.seen: tuple[int, int, int] | None = None

    def set(self, state) -> None:
        key = (state.done, state.skipped, len(state.failed))
        if key != self.seen:
            self.seen = key
            say(state.line(), err=True)


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep)
