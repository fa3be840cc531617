"""The functions a sweep worker runs: importable by reference so Ray workers can load them.

A task is one (method, split, seed): its zero-shot run and, when the sweep has a
``[fewshot]`` table, its few-shot adaptation on the same trained model.
"""

from __future__ import annotations

from typing import Any

import torch

from oodml.train.run import is_finished as run_is_finished
from oodml.train.run import run_one
from oodml.train.spec import FewshotConfig, RunSpec

Item = tuple[RunSpec, int, FewshotConfig | None]


def execute_run(item: Item) -> int:
    """Train and evaluate one run with ``threads`` torch threads (then adapt it few-shot when
    asked); returns its row count."""
    spec, threads, fewshot = item
    if threads > 0:
        torch.set_num_threads(threads)
    rows = len(run_one(spec))
    if fewshot is not None:
        from oodml.train.fewshot import run_fewshot

        rows += len(run_fewshot(spec, fewshot))
    return rows


def is_finished(item: tuple[RunSpec, Any, FewshotConfig | None]) -> bool:
    """Finished before with the same config and split file (else a ConfigError, see
    :func:`oodml.train.run.is_finished`), few-shot rows included when asked for."""
    spec, _, fewshot = item
    if not run_is_finished(spec):
        return False
    if fewshot is None:
        return True
    from oodml.train.fewshot import fewshot_done

    return fewshot_done(spec, fewshot)
