"""``oodml evaluate`` (train + zero-shot retrieval per split and seed), ``oodml fewshot`` and
``oodml losses``. Their options are derived once from ``RunSpec``, ``TrainConfig`` and
``FewshotConfig``; both commands build the same specs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from oodml.config import MAX_SEEDS
from oodml.errors import ConfigError
from oodml.results import check_results_folder
from oodml.train.loop import TrainConfig
from oodml.train.spec import FewshotConfig, RunSpec, check_seeds, method_name
from oodml.train.trainsize import run_grid
from oodml_cli.options import (
    argument,
    build,
    field_params,
    option,
    out_path,
    parse_list,
    with_params,
)
from oodml_cli.ui import Bars, say

RUN_FIELDS = [
    "loss", "loss_args", "miner", "miner_args", "method", "dataset", "backbone", "extractor",
    "weights", "embed_dim", "hidden", "image_size", "metrics", "distance", "gallery_classes",
    "gallery_draws", "train_classes", "train_draws", "device", "cache_dir", "checkpoints",
    "skip_bad",
]  # fmt: skip
RUN_PARAMS = [
    argument("splitfile", Path, "Split file (JSON ladder) from `oodml splits generate`."),
    option("root", Path, ..., "--root", help="Dataset root (folder or zip) the split file "
           "refers to."),
    option("out", Path, ..., "-o", "--out", help="Results folder (results.parquet, "
           "results.csv, runs/).", parser=out_path("results folder")),
    option("seeds", str, "0", "--seeds", help=f"Comma-separated seeds, e.g. 0,1,2 (at most "
           f"{MAX_SEEDS:,})."),
    option("splits", str | None, None, "--splits", help="Comma-separated split ids (default: "
           "all)."),
    option("head_only", bool, False, "--head-only", help="Train only the embedding head on "
           "cached backbone features (the default when no --backbone is given)."),
    *field_params(RunSpec, RUN_FIELDS, required=("loss",)),
    *field_params(TrainConfig),
]


def build_specs(o: dict[str, Any]) -> list[RunSpec]:
    """RunSpecs for every (split, seed) from the parsed options (checked before any work), with
    the train-size-controlled draws after each when ``--train-classes`` is given."""
    from oodml.splits.splitfile import load_splitfile

    if o["backbone"] and o["head_only"]:
        raise ConfigError("give either --backbone NAME or --head-only, not both")
    sf = load_splitfile(o["splitfile"])
    check_results_folder(o["out"])
    split_ids = parse_list(o["splits"], "splits", int) if o["splits"] else None
    seeds = check_seeds(parse_list(o["seeds"], "seeds", int) or (0,))
    ladder = [s.id for s in sf.ladder]
    values = {**o, "weights": None if o["weights"] == "random" else o["weights"]}
    method = build(RunSpec, values, splitfile=str(o["splitfile"]), root=str(o["root"]),
                   results_dir=str(o["out"]), split_id=ladder[0], seed=seeds[0],
                   train=build(TrainConfig, o))
    return run_grid([method], ladder, split_ids, seeds)


@with_params(RUN_PARAMS)
def evaluate(**o) -> None:
    """Train one model per (split, seed) on the split's train classes and evaluate retrieval on
    its test classes; rows go to OUT/results.parquet and .csv. Finished runs are skipped, so a
    killed run resumes where it stopped."""
    from oodml.train.run import run_ladder, summary_line

    specs = build_specs(o)
    with Bars() as bars:

        def done(spec: RunSpec, rows: list[dict], skipped: bool) -> None:
            bars.log(f"{summary_line(spec, rows)} {'skipped (finished)' if skipped else 'done'}")

        run_ladder(specs, bars, on_run=done)
    say(f"results: {o['out'] / 'results.parquet'} ({len(specs)} runs)", err=True)


@with_params(RUN_PARAMS, field_params(FewshotConfig))
def fewshot(**o) -> None:
    """Few-shot adaptation: per episode, fine-tune the trained model (by default its head) on the
    support images of the test classes and evaluate on the query images; rows with
    protocol=fewshot (mean and std over episodes) go to OUT/results.parquet and .csv. The base
    model is the one `oodml evaluate` trained with the same options (reused from its
    checkpoint, or trained here)."""
    from oodml.train.fewshot import run_fewshot_ladder

    cfg = build(FewshotConfig, o)
    specs = build_specs(o)
    with Bars() as bars:

        def done(spec: RunSpec, rows: list[dict], skipped: bool) -> None:
            for n in cfg.shots:
                vals = {r["metric"]: r for r in rows if r["shots"] == n}
                shown = ", ".join(f"{k} {vals[k]['value']:.4f}±{vals[k]['std']:.4f}"
                                  for k in ("recall@1", "map@r") if k in vals)
                bars.log(f"{method_name(spec)} split {spec.split_id} seed {spec.seed} "
                         f"{n}-shot: {shown}")

        run_fewshot_ladder(specs, cfg, bars, on_run=done)
    say(f"results: {o['out'] / 'results.parquet'}", err=True)


def losses() -> None:
    """List the registered losses and miners (with the pml losses left out, and why)."""
    from oodml.train.losses import EXCLUDED, LOSSES
    from oodml.train.miners import MINERS

    for name in LOSSES.names():
        say(f"loss  {name:28s} {LOSSES.get(name).description}")
    for name in MINERS.names():
        say(f"miner {name:28s} {MINERS.get(name).description}")
    for name, why in sorted(EXCLUDED.items()):
        say(f"not a loss here: {name}: {why}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
    app.command("fewshot")(fewshot)
    app.command("losses")(losses)
