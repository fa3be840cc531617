"""The function a sweep worker runs: importable by reference so Ray workers can load it."""

from __future__ import annotations

from typing import Any

import torch

from oodml.train.results import run_path
from oodml.train.runner import RunSpec, run_key, run_one


def execute_run(item: tuple[RunSpec, int]) -> int:
    """Train and evaluate one run with ``threads`` torch threads; returns its row count."""
    spec, threads = item
    if threads > 0:
        torch.set_num_threads(threads)
    return len(run_one(spec))


def is_finished(item: tuple[RunSpec, Any]) -> bool:
    spec = item[0]
    return run_path(spec.results_dir, run_key(spec)).is_file()
