"""Reference implementations and builders the tests share, in one place.

* :func:`study_spec`: a quick training run on the synthetic ``study`` fixture.
* :func:`study_args`: the command line of ``oodml evaluate``/``fewshot`` on that study.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def study_spec(study: Any, out: Path, split_id: int = 1, seed: int = 0, **kw: Any):
    """A RunSpec on the synthetic ``study`` fixture: two epochs of small batches, results in
    ``out``, no size-controlled gallery; ``kw`` overrides any field (loss: multisimilarity)."""
    from oodml.train.loop import TrainConfig
    from oodml.train.spec import RunSpec

    kw.setdefault("loss", "multisimilarity")
    kw.setdefault("train", TrainConfig(epochs=2, batch_size=16, m=4))
    kw.setdefault("gallery_classes", 0)
    return RunSpec(splitfile=str(study.splitfile), root=str(study.root), split_id=split_id,
                   seed=seed, results_dir=str(out), cache_dir=str(study.cache_dir), **kw)


def study_args(study: Any, command: str, out: Path, *extra: str) -> list[str]:
    """``oodml COMMAND`` on the synthetic ``study`` (its split file, root and feature cache)
    with the options ``extra``, results in ``out`` (the last two arguments)."""
    return [command, str(study.splitfile), "--root", str(study.root), "--cache",
            str(study.cache_dir), *extra, "--out", str(out)]
