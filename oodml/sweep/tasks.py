"""The function a sweep worker runs: importable by reference so Ray workers can load it."""

from __future__ import annotations

from typing import Any

import torch

from oodml.train.runner import RunSpec, run_one
from oodml.train.runner import is_finished as run_is_finished


def execute_run(item: tuple[RunSpec, int]) -> int:
    """Train and evaluate one run with ``threads`` torch threads; returns its row count."""
    spec, threads = item
    if threads > 0:
        torch.set_num_threads(threads)
    return len(run_one(spec))


def is_finished(item: tuple[RunSpec, Any]) -> bool:
    """Finished before with the same config and split file (else a ConfigError, see
    :func:`oodml.train.runner.is_finished`)."""
    return run_is_finished(item[0])
