"""Run a sweep config on a backend and merge every finished run into the results table."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from oodml.config import MAX_CPUS, MAX_RETRIES, check_float, check_int
from oodml.errors import ConfigError
from oodml.results import check_results_folder, merge_results
from oodml.splits.splitfile import load_splitfile
from oodml.sweep.config import SweepConfig, expand
from oodml.sweep.engine import LocalBackend, SweepState, Task, run_tasks
from oodml.sweep.ray_backend import RayBackend, probe_address
from oodml.sweep.tasks import execute_run, is_finished
from oodml.train.fewshot import check_fewshot
from oodml.train.run import check_specs
from oodml.train.spec import RunSpec, run_key

BACKENDS = ("local", "ray")


@dataclass
class SweepOutcome:
    state: SweepState
    table: pd.DataFrame
    specs: list[RunSpec]


@dataclass(frozen=True)
class SweepRun:
    """How to run a sweep (not what): backend, cluster address and per-run resources."""

    backend: str = "local"
    address: str | None = None
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    retries: int = 2
    num_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"backend={self.backend!r} is not one of: {', '.join(BACKENDS)}")
        if self.address is not None and self.backend != "ray":
            raise ConfigError(
                f"address={self.address!r} is a Ray cluster's; use backend='ray' with it, or "
                "drop it"
            )
        check_float("cpus_per_run", self.cpus_per_run, positive=True, hi=MAX_CPUS)
        check_float("gpus_per_run", self.gpus_per_run, 0.0, hi=MAX_CPUS)
        check_int("retries", self.retries, 0, MAX_RETRIES)
        if self.num_cpus is not None:
            check_int("num_cpus", self.num_cpus, 1, MAX_CPUS)


def plan(cfg: SweepConfig, how: SweepRun = SweepRun()) -> list[RunSpec]:
    """The checked grid; every error that can be found before training is raised here.

    With GPUs per run the runs train on ``cuda``; on Ray the GPUs are the workers', so this
    machine (often a CPU-only head node) needs none: the Ray backend checks the cluster has
    them instead. A Ray ``address`` must answer the Ray handshake (``probe_address``)."""
    sf = load_splitfile(cfg.splitfile)
    check_results_folder(cfg.results)
    specs = expand(cfg, [s.id for s in sf.ladder])
    if how.gpus_per_run > 0:
        specs = [
            dataclasses.replace(s, device="cuda") if s.device in ("cpu", "auto") else s
            for s in specs
        ]
    check_specs(specs, check_device=not (how.backend == "ray" and how.gpus_per_run > 0))
    if cfg.fewshot is not None:
        for spec in specs:
            check_fewshot(spec, cfg.fewshot)
    if how.backend == "ray" and how.address:
        probe_address(how.address)
    return specs


def make_backend(how: SweepRun):
    if how.backend == "ray":
        return RayBackend(how.address, how.cpus_per_run, how.gpus_per_run, how.num_cpus)
    return LocalBackend(isolate=True)


def run_sweep(
    cfg: SweepConfig,
    how: SweepRun = SweepRun(),
    *,
    on_update: Callable[[SweepState], None] | None = None,
) -> SweepOutcome:
    """Run every unfinished (method, split, seed) of ``cfg``; finished runs are skipped.
    ``on_update(state)`` hears every change of the counts (the CLI draws its status line)."""
    specs = plan(cfg, how)
    threads = max(1, int(how.cpus_per_run))
    tasks = [Task(run_key(s), (s, threads, cfg.fewshot)) for s in specs]
    state = run_tasks(
        tasks, execute_run, is_finished, make_backend(how), retries=how.retries,
        on_update=on_update,
    )
    table = merge_results(Path(cfg.results))
    return SweepOutcome(state, table, specs)
