"""CLI commands ``evaluate`` (train + zero-shot retrieval per split and seed) and ``fewshot``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from oodml.commands.common import SKIP_BAD
from oodml.errors import ConfigError
from oodml.fileio import check_writable_dir

SPLITFILE = typer.Argument(..., help="Split file (JSON ladder) from `oodml splits generate`.")
ROOT = typer.Option(..., "--root", help="Dataset root (folder or zip) the split file refers to.")
DATASET = typer.Option(None, "--dataset", help="Dataset loader name (default: the split file's).")
LOSS = typer.Option(
    ...,
    "--loss",
    help="Loss name (e.g. multisimilarity, triplet, proxyanchor, softmax) or "
    "an import path 'package.module:Class'. See `oodml losses`.",
)
LOSS_ARGS = typer.Option(None, "--loss-args", help="Loss arguments, e.g. 'alpha=2,beta=50'.")
MINER = typer.Option(None, "--miner", help="Miner name (e.g. triplet-semihard, batch-hard).")
MINER_ARGS = typer.Option(None, "--miner-args", help="Miner arguments, e.g. 'margin=0.1'.")
METHOD = typer.Option(None, "--method", help="Method name in the results (default: loss[+miner]).")
BACKBONE = typer.Option(
    None,
    "--backbone",
    help="Train the full network: resnet50, efficientnet-lite0 or any torchvision model name.",
)
HEAD_ONLY = typer.Option(
    False,
    "--head-only",
    help="Train only the embedding head on cached backbone features "
    "(the default when no --backbone is given).",
)
EXTRACTOR = typer.Option(
    None, "--extractor", help="Feature extractor for --head-only (default: the split file's)."
)
WEIGHTS = typer.Option(
    "imagenet", "--weights", help="Backbone weights: imagenet (hub cache), a file, or random."
)
EMBED_DIM = typer.Option(128, "--embed-dim", help="Embedding dimension.")
HIDDEN = typer.Option(0, "--hidden", help="Hidden width of an MLP head (0: linear head).")
IMAGE_SIZE = typer.Option(224, "--image-size", help="Crop size for full-backbone training.")
SEEDS = typer.Option("0", "--seeds", help="Comma-separated seeds, e.g. 0,1,2.")
SPLITS = typer.Option(None, "--splits", help="Comma-separated split ids (default: all).")
EPOCHS = typer.Option(10, "--epochs", help="Training epochs.")
BATCH = typer.Option(64, "--batch-size", help="Training batch size.")
LR = typer.Option(1e-3, "--lr", help="Learning rate.")
OPTIMIZER = typer.Option("adam", "--optimizer", help="adam, adamw or sgd.")
SCHEDULE = typer.Option("none", "--schedule", help="LR schedule: none, cosine or step.")
WEIGHT_DECAY = typer.Option(0.0, "--weight-decay", help="Weight decay.")
LOSS_LR_MULT = typer.Option(
    1.0, "--loss-lr-mult", help="LR multiplier for loss parameters (proxies, classifier)."
)
SAMPLER = typer.Option("m-per-class", "--sampler", help="Batch sampler: m-per-class or random.")
M = typer.Option(4, "--m", help="Images per class in a batch (m-per-class sampler).")
AMP = typer.Option(False, "--amp", help="Mixed precision (CUDA only).")
CHANNELS_LAST = typer.Option(False, "--channels-last", help="Channels-last memory (CUDA only).")
WORKERS = typer.Option(0, "--workers", help="DataLoader workers for image decoding.")
DEVICE = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N or auto.")
CACHE = typer.Option(None, "--cache", help="Feature cache folder (default $OODML_CACHE).")
METRICS = typer.Option(None, "--metrics", help="Comma-separated metrics (default: all).")
DISTANCE = typer.Option("cosine", "--distance", help="Retrieval distance: cosine or euclidean.")
OUT = typer.Option(..., "--out", help="Results folder (results.parquet, results.csv, runs/).")
NO_CKPT = typer.Option(False, "--no-checkpoints", help="Do not write per-epoch checkpoints.")


def parse_ints(text: str | None, what: str) -> list[int] | None:
    """'0,1,2' -> [0, 1, 2]; None/'' -> None."""
    if text is None or not text.strip():
        return None
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"{what} {text!r} must be comma-separated integers, e.g. 0,1,2") from None


def build_specs(**o: object) -> list:
    """RunSpecs for every (split, seed) from the shared command-line options."""
    from oodml.metrics import DEFAULT_METRICS
    from oodml.splits.splitfile import load_splitfile
    from oodml.train.config import parse_kv
    from oodml.train.loop import TrainConfig
    from oodml.train.runner import RunSpec

    if o["backbone"] and o["head_only"]:
        raise ConfigError("give either --backbone NAME or --head-only, not both")
    sf = load_splitfile(o["splitfile"])
    check_writable_dir(o["out"], "results folder")
    split_ids = parse_ints(o["splits"], "--splits") or [s.id for s in sf.ladder]
    for sid in split_ids:
        sf.split(sid)
    seeds = parse_ints(o["seeds"], "--seeds") or [0]
    metrics = tuple(m.strip() for m in str(o["metrics"]).split(",")) if o["metrics"] else None
    train = TrainConfig(
        epochs=o["epochs"],
        batch_size=o["batch_size"],
        optimizer=o["optimizer"],
        lr=o["lr"],
        weight_decay=o["weight_decay"],
        schedule=o["schedule"],
        loss_lr_mult=o["loss_lr_mult"],
        sampler=o["sampler"],
        m=o["m"],
        amp=o["amp"],
        channels_last=o["channels_last"],
        num_workers=o["workers"],
    )
    weights = None if o["weights"] == "random" else o["weights"]
    return [
        RunSpec(
            splitfile=str(o["splitfile"]),
            root=str(o["root"]),
            split_id=sid,
            seed=seed,
            loss=o["loss"],
            results_dir=str(o["out"]),
            loss_args=parse_kv(o["loss_args"], "loss argument"),
            miner=o["miner"],
            miner_args=parse_kv(o["miner_args"], "miner argument"),
            method=o["method"],
            dataset=o["dataset"],
            backbone=o["backbone"],
            extractor=o["extractor"],
            weights=weights,
            embed_dim=o["embed_dim"],
            hidden=o["hidden"],
            image_size=o["image_size"],
            train=train,
            metrics=metrics or DEFAULT_METRICS,
            distance=o["distance"],
            device=o["device"],
            cache_dir=str(o["cache"]) if o["cache"] else None,
            checkpoints=not o["no_checkpoints"],
            skip_bad=o["skip_bad"],
        )
        for sid in split_ids
        for seed in seeds
    ]


def evaluate(
    splitfile: Path = SPLITFILE,
    root: Path = ROOT,
    dataset: str | None = DATASET,
    loss: str = LOSS,
    loss_args: str | None = LOSS_ARGS,
    miner: str | None = MINER,
    miner_args: str | None = MINER_ARGS,
    method: str | None = METHOD,
    backbone: str | None = BACKBONE,
    head_only: bool = HEAD_ONLY,
    extractor: str | None = EXTRACTOR,
    weights: str = WEIGHTS,
    embed_dim: int = EMBED_DIM,
    hidden: int = HIDDEN,
    image_size: int = IMAGE_SIZE,
    seeds: str = SEEDS,
    splits: str | None = SPLITS,
    epochs: int = EPOCHS,
    batch_size: int = BATCH,
    lr: float = LR,
    optimizer: str = OPTIMIZER,
    schedule: str = SCHEDULE,
    weight_decay: float = WEIGHT_DECAY,
    loss_lr_mult: float = LOSS_LR_MULT,
    sampler: str = SAMPLER,
    m: int = M,
    amp: bool = AMP,
    channels_last: bool = CHANNELS_LAST,
    workers: int = WORKERS,
    device: str = DEVICE,
    cache: Path | None = CACHE,
    metrics: str | None = METRICS,
    distance: str = DISTANCE,
    out: Path = OUT,
    no_checkpoints: bool = NO_CKPT,
    skip_bad: bool = SKIP_BAD,
) -> None:
    """Train one model per (split, seed) on the split's train classes and evaluate retrieval on
    its test classes; rows go to OUT/results.parquet and .csv. Finished runs are skipped, so a
    killed run resumes where it stopped."""
    from oodml.train.runner import run_ladder

    specs = build_specs(**locals())
    console = Console(stderr=True)
    run_ladder(specs, console=console)
    console.print(f"results: {out / 'results.parquet'} ({len(specs)} runs)", highlight=False)


def fewshot(
    splitfile: Path = SPLITFILE,
    root: Path = ROOT,
    dataset: str | None = DATASET,
    loss: str = LOSS,
    loss_args: str | None = LOSS_ARGS,
    miner: str | None = MINER,
    miner_args: str | None = MINER_ARGS,
    method: str | None = METHOD,
    backbone: str | None = BACKBONE,
    head_only: bool = HEAD_ONLY,
    extractor: str | None = EXTRACTOR,
    weights: str = WEIGHTS,
    embed_dim: int = EMBED_DIM,
    hidden: int = HIDDEN,
    image_size: int = IMAGE_SIZE,
    seeds: str = SEEDS,
    splits: str | None = SPLITS,
    epochs: int = EPOCHS,
    batch_size: int = BATCH,
    lr: float = LR,
    optimizer: str = OPTIMIZER,
    schedule: str = SCHEDULE,
    weight_decay: float = WEIGHT_DECAY,
    loss_lr_mult: float = LOSS_LR_MULT,
    sampler: str = SAMPLER,
    m: int = M,
    amp: bool = AMP,
    channels_last: bool = CHANNELS_LAST,
    workers: int = WORKERS,
    device: str = DEVICE,
    cache: Path | None = CACHE,
    metrics: str | None = METRICS,
    distance: str = DISTANCE,
    out: Path = OUT,
    no_checkpoints: bool = NO_CKPT,
    skip_bad: bool = SKIP_BAD,
    shots: str = typer.Option("2,5", "--shots", help="Comma-separated shot counts."),
    ft_epochs: int = typer.Option(20, "--ft-epochs", help="Fine-tuning epochs per episode."),
    ft_lr: float | None = typer.Option(None, "--ft-lr", help="Fine-tuning LR (default: --lr)."),
    tune: str = typer.Option("head", "--tune", help="What to fine-tune: head or all."),
    max_episodes: int | None = typer.Option(
        None, "--max-episodes", help="Use at most this many episodes per shot count."
    ),
) -> None:
    """Few-shot adaptation: per episode, fine-tune the trained model (by default its head) on the
    support images of the test classes and evaluate on the query images; rows with
    protocol=fewshot (mean and std over episodes) go to OUT/results.parquet and .csv. The base
    model is the one `oodml evaluate` trained with the same options (reused from its
    checkpoint, or trained here)."""
    from oodml.train.fewshot import FewshotConfig, check_fewshot, run_fewshot
    from oodml.train.results import merge_results
    from oodml.train.runner import check_specs, make_progress, method_name

    opts = dict(locals())
    for k in ("shots", "ft_epochs", "ft_lr", "tune", "max_episodes"):
        opts.pop(k)
    specs = build_specs(**opts)
    cfg = FewshotConfig(
        shots=tuple(parse_ints(shots, "--shots") or ()),
        epochs=ft_epochs,
        lr=ft_lr,
        tune=tune,
        max_episodes=max_episodes,
    )
    check_specs(specs)
    for spec in specs:
        check_fewshot(spec, cfg)
    console = Console(stderr=True)
    with make_progress(console) as progress:
        for spec in specs:
            rows = run_fewshot(spec, cfg, progress)
            merge_results(spec.results_dir)
            for n in cfg.shots:
                vals = {r["metric"]: r for r in rows if r["shots"] == n}
                shown = ", ".join(
                    f"{k} {vals[k]['value']:.4f}±{vals[k]['std']:.4f}"
                    for k in ("recall@1", "map@r")
                    if k in vals
                )
                console.print(
                    f"{method_name(spec)} split {spec.split_id} seed {spec.seed} {n}-shot: {shown}",
                    highlight=False,
                    soft_wrap=True,
                )
    console.print(f"results: {out / 'results.parquet'}", highlight=False)


def losses() -> None:
    """List the registered losses and miners (with the pml losses left out, and why)."""
    from oodml.train.losses import EXCLUDED, LOSSES
    from oodml.train.miners import MINERS

    console = Console()
    for name in LOSSES.names():
        console.print(f"loss  {name:28s} {LOSSES.get(name).description}", highlight=False)
    for name in MINERS.names():
        console.print(f"miner {name:28s} {MINERS.get(name).description}", highlight=False)
    for name, why in sorted(EXCLUDED.items()):
        console.print(f"not a loss here: {name}: {why}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the main app."""
    app.command("evaluate")(evaluate)
    app.command("fewshot")(fewshot)
    app.command("losses")(losses)
