"""Run a sweep config on a backend and merge every finished run into the results table."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.live import Live
from rich.text import Text

from oodml.errors import ConfigError
from oodml.fileio import check_writable_dir
from oodml.splits.splitfile import load_splitfile
from oodml.sweep.config import SweepConfig, expand
from oodml.sweep.engine import LocalBackend, SweepState, Task, run_tasks
from oodml.sweep.ray_backend import RayBackend
from oodml.sweep.tasks import execute_run, is_finished
from oodml.train.results import merge_results
from oodml.train.runner import RunSpec, check_specs, run_key

BACKENDS = ("local", "ray")


@dataclass
class SweepOutcome:
    state: SweepState
    table: pd.DataFrame
    specs: list[RunSpec]


def plan(cfg: SweepConfig, gpus_per_run: float = 0.0, backend: str = "local") -> list[RunSpec]:
    """The checked grid; every error that can be found before training is raised here.

    With GPUs per run the runs train on ``cuda``; on Ray the GPUs are the workers', so this
    machine (often a CPU-only head node) needs none: the Ray backend checks the cluster has
    them instead."""
    sf = load_splitfile(cfg.splitfile)
    check_writable_dir(cfg.results, "results folder")
    specs = expand(cfg, [s.id for s in sf.ladder])
    if gpus_per_run > 0:
        specs = [
            dataclasses.replace(s, device="cuda") if s.device == "cpu" else s for s in specs
        ]
    check_specs(specs, check_device=not (backend == "ray" and gpus_per_run > 0))
    return specs


class _StateLine:
    """The live progress line, redrawn every second so the ETA moves during long runs."""

    def __init__(self) -> None:
        self.state: SweepState | None = None

    def __rich__(self) -> Text:
        return Text(self.state.line() if self.state else "starting sweep")


def make_backend(
    backend: str,
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    num_cpus: int | None = None,
):
    if backend == "local":
        return LocalBackend()
    if backend == "ray":
        return RayBackend(address, cpus_per_run, gpus_per_run, num_cpus)
    raise ConfigError(f"unknown sweep backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


def run_sweep(
    cfg: SweepConfig,
    *,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    retries: int = 2,
    num_cpus: int | None = None,
    console: Console | None = None,
) -> SweepOutcome:
    """Run every unfinished (method, split, seed) of ``cfg``; finished runs are skipped."""
    if retries < 0:
        raise ConfigError(f"--retries must be >= 0, got {retries}")
    console = console or Console(stderr=True)
    specs = plan(cfg, gpus_per_run, backend)
    threads = max(1, int(cpus_per_run))
    tasks = [Task(run_key(s), (s, threads)) for s in specs]
    runner = make_backend(backend, address, cpus_per_run, gpus_per_run, num_cpus)
    line = _StateLine()
    with Live(line, console=console, transient=False, refresh_per_second=1) as live:

        def show(state: SweepState) -> None:
            line.state = state
            live.refresh()

        state = run_tasks(tasks, execute_run, is_finished, runner, retries=retries, on_update=show)
    for key, n in sorted(state.retried.items()):
        console.print(f"retried {key} {n} time(s)", highlight=False)
    for key, err in sorted(state.failed.items()):
        console.print(f"[red]failed[/red] {key}: {err}", highlight=False)
    table = merge_results(Path(cfg.results))
    return SweepOutcome(state, table, specs)
