"""Generate a split file: class statistics -> ladder procedure -> selection -> sub-splits.

:class:`LadderConfig` holds every ladder-generation option and validates them all when it is
built, so a caller (the CLI, a script) can reject bad options before feature extraction;
:func:`generate_splitfile` then runs it on a dataset manifest and its feature set.

Seeds: the procedure gets ``seed`` (used for a random starting split); the sub-splits of ladder
split ``k`` use independent generators derived from ``(seed, k)`` (see ``subsplits.split_rng``),
so the same inputs and seed always give the same SplitFile and the same bytes on disk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from oodml import __version__
from oodml.config import (
    MAX_BOOTSTRAP,
    MAX_EPISODES,
    MAX_LEVELS,
    MAX_SHOT_COUNTS,
    MAX_SHOTS,
    MAX_STEPS,
    MAX_SUPPORT_PATHS,
    option_field,
    shown,
)
from oodml.data.hierarchy import Hierarchy, hierarchy_of
from oodml.errors import ConfigError
from oodml.progress import NO_PROGRESS, Progress, tick_callback
from oodml.splits.hierarchy import hierarchy_ladder
from oodml.splits.ladder import (
    PROCEDURES,
    Params,
    resolve_params,
    run_procedure,
    select_ladder,
    start_split,
)
from oodml.splits.paired import (
    PAIRED_ROUTES,
    SEPARATION_CANDIDATES,
    PairedLadder,
    ladder_paired,
    ladder_test,
    pair_p_values,
    paired_route,
    paired_seed,
    separated_chain,
    supported_levels,
    with_paired,
)
from oodml.splits.semantic import with_semantic
from oodml.splits.splitfile import Split, SplitFile
from oodml.splits.subsplits import (
    DEFAULT_EPISODES,
    DEFAULT_SHOTS,
    DEFAULT_VAL_FRACTION,
    few_shot_episodes,
    paths_by_class,
    split_rng,
    train_val_split,
)
from oodml.splits.uncertainty import DEFAULT_BOOTSTRAPS, ladder_cis, with_distance_cis
from oodml.stats.class_stats import ClassStats
from oodml.stats.measures import get_measure
from oodml.stats.modes import distance_mode, distance_within

START_CHOICES = ("auto", "default", "random")


def build_split(
    split_id: int,
    distance: float,
    is_start: bool,
    train: Sequence[str],
    test: Sequence[str],
    removed: Sequence[str],
    *,
    class_paths: Mapping[str, Sequence[str]],
    seed: int,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    shots: Sequence[int] = DEFAULT_SHOTS,
    episodes: int = DEFAULT_EPISODES,
) -> Split:
    """One ladder split with its seeded validation sub-split and few-shot episodes."""
    val_train, val = train_val_split(train, val_fraction, split_rng(seed, split_id, 0))
    eps, skipped = few_shot_episodes(
        test, class_paths, shots, episodes, split_rng(seed, split_id, 1)
    )
    return Split(
        id=split_id,
        distance=float(distance),
        is_start=bool(is_start),
        train=tuple(sorted(train)),
        test=tuple(sorted(test)),
        removed=tuple(sorted(removed)),
        val_train=val_train,
        val=val,
        episodes=eps,
        episodes_skipped=skipped,
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


DEFAULT_LEVELS = 8


@dataclass(frozen=True)
class LadderConfig:
    """Every option of ladder generation, validated when built (errors name the field).

    ``params`` is the procedure's dataclass (:class:`~oodml.splits.procedures.GreedyParams`,
    :class:`~oodml.splits.procedures.OodmlParams`) or a mapping of overrides (parsed Python
    values), stored resolved for ``mode``. ``levels`` None means the default number of splits,
    unless ``targets`` pick them (the file then records the default, as before). ``eps`` is
    added to both covariance diagonals (None: the mode's default, 1e-8 class-means, 0 samples).
    ``removal`` is stored in ``params.removal`` (None: the params' value); the ``oodml``
    procedure keeps the published two-sided removal and rejects it. ``measure`` is what the
    walk maximises (:mod:`oodml.stats.measures`), recorded in the split file when not
    ``frechet``. ``bootstrap``: replicates of the marginal and the paired distance intervals
    (0: none). ``separation``: a confidence level (e.g. 0.95); the levels are then picked
    from the walk so that every adjacent pair differs at that level (paired class bootstrap,
    Holm over the pairs), as many as the data supports unless ``levels`` is given (not with
    ``targets``; Fréchet only). ``train_size``: trim every selected split's train set to
    this many classes (``"min"``: the selected ladder's smallest train set), drawn at
    random (seeded), so every level trains on the same number of classes; the trimmed
    classes join ``removed``, distances are recomputed and the splits re-ordered by them,
    and the file records ``selection.train_size`` (None: off, the file as before).
    The ``help`` of each field is what ``oodml splits generate --help`` prints.
    """

    mode: str = option_field("class-means", "Distance: class-means or samples.")
    procedure: str = option_field(
        "greedy", "Ladder: greedy or oodml (walks graded by distance) or hierarchy (graded by "
        "the share of test classes whose superclass is unseen in train).")
    params: Params | Mapping[str, Any] | None = option_field(
        None, "Procedure parameters NAME=VALUE[,...] (repeatable), e.g. history=5; counts at "
        f"most {MAX_STEPS}.", flag="param")
    levels: int | None = option_field(
        None, f"Number of ladder splits K (default {DEFAULT_LEVELS}, at most {MAX_LEVELS}; not "
        "with --targets).")
    targets: tuple[float, ...] | None = option_field(
        None, "Pick the splits nearest these distances, e.g. 20,40,80.")
    seed: int = option_field(0, "Seed: random start split and sub-splits.")
    start: str = option_field("auto", "Start split: auto (default if any), default or random.")
    val_fraction: float = option_field(
        DEFAULT_VAL_FRACTION, "Share of train classes in the validation sub-split.")
    shots: tuple[int, ...] = option_field(
        DEFAULT_SHOTS, f"Few-shot support sizes (at most {MAX_SHOT_COUNTS}, each at most "
        f"{MAX_SHOTS}).")
    episodes: int = option_field(
        DEFAULT_EPISODES, f"Few-shot episodes per shot count (at most {MAX_EPISODES}, and at "
        f"most {MAX_SUPPORT_PATHS:,} support paths in the file).")
    eps: float | None = option_field(
        None, "Added to both covariance diagonals (default: 1e-8 class-means, 0 samples).")
    removal: str | None = option_field(
        None, "Greedy removal policy: test-fixed (default; train side only, every split keeps "
        "the test classes' count), balanced (both sides, within one class of the start's "
        "train/test ratio), any (whichever side raises the distance most; the previous "
        "default) or none.")
    bootstrap: int = option_field(
        DEFAULT_BOOTSTRAPS, "Bootstrap resamples of the classes for each split's 95% distance "
        f"interval and the paired differences (0: none; at most "
        f"{MAX_BOOTSTRAP}).")
    measure: str = option_field(
        "frechet", "What the walk maximises: frechet (default), kid, fid-inf or w2-classes; "
        "recorded in the split file (not frechet).")
    train_size: int | str | None = option_field(
        None, "Trim every split's train set to N classes (seeded draw; 'min': the ladder's "
        "smallest train set), so every level trains on the same number of classes; distances "
        "are recomputed.")
    separation: float | None = option_field(
        None, "Pick levels whose adjacent pairs differ at this confidence, e.g. 0.95 (paired "
        "class bootstrap, Holm); as many as the data supports unless --levels is given.")
    paired: str = option_field(
        "exact", "Replicates of the paired differences: exact (every replicate's distances "
        "recomputed) or linear (first-order expansion in the class weights, on the same class "
        "draws: a few % of the walk's time at CUB size; class-means only; recorded in the file).")
    semantic: bool = option_field(
        True, "Record each split's semantic shift (share of test classes whose superclass is "
        "unseen in train) when the dataset has superclasses or --hierarchy is given.")

    def __post_init__(self) -> None:
        if self.procedure == "hierarchy":
            _check_hierarchy_config(self)
        object.__setattr__(self, "train_size", _check_train_size(self.train_size))
        if self.train_size is not None and self.measure != "frechet":
            raise ConfigError(f"train_size={self.train_size!r} recomputes Fréchet distances; "
                              f"it does not combine with measure={self.measure!r}")
        if not _is_int(self.bootstrap) or not 0 <= self.bootstrap <= MAX_BOOTSTRAP:
            raise ConfigError(f"bootstrap={shown(self.bootstrap)} must be an integer >= 0 and "
                              f"<= {MAX_BOOTSTRAP} (0: no distance intervals; 2,000 replicates "
                              "give a stable 95% interval)")
        get_measure(self.measure).check_mode(self.mode)
        if self.paired not in PAIRED_ROUTES:
            raise ConfigError(f"paired={shown(self.paired)} must be one of: "
                              f"{', '.join(PAIRED_ROUTES)}")
        if self.paired == "linear" and self.mode != "class-means":
            raise ConfigError(f"paired='linear' expands the class-means distance; with "
                              f"mode={self.mode!r} use paired='exact'")
        sep = self.separation
        if sep is not None:
            if isinstance(sep, bool) or not isinstance(sep, (int, float)) or not 0.5 <= sep < 1:
                raise ConfigError(f"separation={sep!r} must be a confidence level in [0.5, 1), "
                                  "e.g. 0.95")
            if self.targets is not None:
                raise ConfigError("separation and targets both pick the levels; give one of them")
            if not self.bootstrap:
                raise ConfigError(f"separation={sep!r} needs the paired bootstrap; give "
                                  "bootstrap >= 1 (e.g. 200)")
            if self.measure != "frechet":
                raise ConfigError(f"separation={sep!r} works with measure 'frechet' only (the "
                                  f"paired bootstrap recomputes Fréchet distances), not "
                                  f"{self.measure!r}")
            object.__setattr__(self, "separation", float(sep))
        dm = distance_mode(self.mode)
        PROCEDURES.get(self.procedure)
        params = self.params
        if self.removal is not None:
            params = _with_removal(self.procedure, params, self.removal)
        if isinstance(params, Mapping) and "eps" in params:
            params = dict(params)
            eps = params.pop("eps")
            if self.eps is not None and eps != self.eps:
                raise ConfigError(f"eps given twice: eps={self.eps!r} and params eps={eps!r}")
            object.__setattr__(self, "eps", eps)
        if self.eps is not None:
            object.__setattr__(self, "eps", dm.eps(self.eps))
        object.__setattr__(self, "params", resolve_params(self.procedure, self.mode, params))
        if self.levels is not None and self.targets is not None:
            raise ConfigError(
                f"levels={self.levels!r} and targets={list(self.targets)!r} both given; targets "
                "pick one split per target, so give one of them"
            )
        if self.levels is None and self.targets is None and self.separation is None:
            object.__setattr__(self, "levels", DEFAULT_LEVELS)
        if self.levels is not None and (
            not _is_int(self.levels) or not 1 <= self.levels <= MAX_LEVELS
        ):
            raise ConfigError(f"levels={shown(self.levels)} must be an integer >= 1 and <= "
                              f"{MAX_LEVELS}")
        if self.targets is not None:
            targets = tuple(self.targets)
            ok = all(
                isinstance(t, (int, float, np.integer, np.floating))
                and not isinstance(t, bool)
                and np.isfinite(t)
                for t in targets
            )
            if not targets or not ok:
                raise ConfigError(
                    f"targets={shown(list(targets))} must be finite numbers, e.g. 20,40,80"
                )
            if len(targets) > MAX_LEVELS:
                raise ConfigError(f"targets lists {len(targets):,} distances; at most "
                                  f"{MAX_LEVELS} (one split each)")
            object.__setattr__(self, "targets", tuple(float(t) for t in targets))
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed={shown(self.seed)} must be an integer in [0, 2**63)")
        if self.start not in START_CHOICES:
            raise ConfigError(
                f"start={self.start!r} is unknown; choose one of: {', '.join(START_CHOICES)}"
            )
        vf = self.val_fraction
        if isinstance(vf, bool) or not isinstance(vf, (int, float)) or not 0.0 <= vf < 1.0:
            raise ConfigError(f"val_fraction={vf!r} must be a number in [0, 1), e.g. 0.25")
        shots = tuple(self.shots)
        if not shots or not all(_is_int(x) and x >= 1 for x in shots):
            raise ConfigError(f"shots={shown(list(shots))} must be positive integers, e.g. 2,5,10")
        if len(shots) > MAX_SHOT_COUNTS or max(shots) > MAX_SHOTS:
            raise ConfigError(f"shots={shown(list(shots))} must list at most {MAX_SHOT_COUNTS} "
                              f"shot counts, each at most {MAX_SHOTS}")
        object.__setattr__(self, "shots", tuple(int(x) for x in shots))
        if not _is_int(self.episodes) or not 1 <= self.episodes <= MAX_EPISODES:
            raise ConfigError(f"episodes={shown(self.episodes)} must be an integer >= 1 and <= "
                              f"{MAX_EPISODES}")


def _check_hierarchy_config(config: LadderConfig) -> None:
    """The options the hierarchy procedure does not take (it picks levels by meaning)."""
    for name in ("targets", "separation", "train_size"):
        if getattr(config, name) is not None:
            raise ConfigError(f"{name}={getattr(config, name)!r} does not apply to procedure "
                              "'hierarchy', whose levels are picked by semantic shift; use "
                              "params fixed_train=true for equal train sizes")
    if config.measure != "frechet":
        raise ConfigError(f"measure={config.measure!r}: the hierarchy procedure records the "
                          "Fréchet distance only")
    if not config.semantic:
        raise ConfigError("semantic=False: a hierarchy ladder always records its semantic "
                          "shift")


def _check_train_size(value: Any) -> int | str | None:
    if value is None or value == "min":
        return value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip()[:20])
    if not _is_int(value) or value < 2:
        raise ConfigError(f"train_size={value!r} must be an integer >= 2 or 'min' (the "
                          "ladder's smallest train set)")
    return int(value)


def trim_train_sets(stats: ClassStats, steps: Sequence[Any], config: LadderConfig
                    ) -> tuple[int, list[tuple[float, bool, tuple, tuple, tuple]]]:
    """Every step's train set cut to N classes (seeded draw per step, from the sorted names
    with ``default_rng((seed, 0x747273, k))``), the rest added to ``removed``; a step already
    at N keeps its walk distance, a trimmed one gets its distance recomputed. Returns N and
    (distance, is_start, train, test, removed) per step, sorted by distance."""
    sizes = [len(step.train) for step in steps]
    n = min(sizes) if config.train_size == "min" else int(config.train_size)  # type: ignore[arg-type]
    if n > min(sizes):
        raise ConfigError(f"train_size={n} exceeds the smallest train set of the ladder "
                          f"({min(sizes)} classes); choose at most that, or 'min'")
    out = []
    for k, step in enumerate(steps):
        train, removed = tuple(sorted(step.train)), tuple(step.removed)
        distance = float(step.distance)
        if len(train) > n:
            rng = np.random.default_rng((config.seed, 0x747273, k))
            keep = sorted(int(i) for i in rng.choice(len(train), size=n, replace=False))
            kept = set(keep)
            cut = tuple(c for i, c in enumerate(train) if i not in kept)
            train = tuple(train[i] for i in keep)
            removed = tuple(sorted((*removed, *cut)))
            distance = float(distance_within(stats, train, step.test, config.mode, config.eps))
        out.append((distance, bool(step.is_start), train, tuple(step.test), removed))
    out.sort(key=lambda t: t[0])
    return n, out


def _with_removal(procedure: str, params: Any, removal: Any) -> Any:
    """``params`` with the removal policy set (a mapping or a GreedyParams)."""
    if procedure != "greedy":
        raise ConfigError(
            f"removal={removal!r} applies to procedure 'greedy' only; 'oodml' keeps the "
            "published two-sided removal"
        )
    if params is None or isinstance(params, Mapping):
        given = dict(params or {})
        if "removal" in given and given["removal"] != removal:
            raise ConfigError(
                f"removal given twice: removal={removal!r} and params removal={given['removal']!r}"
            )
        return {**given, "removal": removal}
    return replace(params, removal=removal)


def generate_splitfile(
    manifest: Any,
    featureset: Any,
    config: LadderConfig | None = None,
    progress: Progress = NO_PROGRESS,
    hierarchy: Hierarchy | None = None,
    **options: Any,
) -> SplitFile:
    """Walk the ladder procedure of ``config`` on ``featureset`` (or, for ``hierarchy``, build
    the levels from the class hierarchy), package the selected splits, record each split's
    semantic shift when a hierarchy is known (``hierarchy``, else the loader's superclasses;
    ``config.semantic``) and (``config.bootstrap`` > 0) give each its bootstrap interval of
    the distance and the paired differences.

    Without ``config`` the keyword ``options`` build one (``LadderConfig(**options)``).
    """
    if config is None:
        config = LadderConfig(**options)
    elif options:
        raise ConfigError(f"give a LadderConfig or options, not both ({', '.join(options)})")
    if featureset.fingerprint != manifest.fingerprint:
        raise ConfigError(
            f"features are for another version of dataset {manifest.name!r} "
            f"({featureset.fingerprint[:12]}... vs {manifest.fingerprint[:12]}...); recompute them"
        )
    check_generation_cost(manifest, config)
    stats = ClassStats.from_features(featureset.features, featureset.labels)
    if hierarchy is None:
        hierarchy = hierarchy_of(manifest)
    if config.procedure == "hierarchy":
        return finish_splitfile(manifest, featureset, config, stats, progress,
                       *_hierarchy_rows(manifest, stats, config, hierarchy), hierarchy)
    train, test = start_classes(manifest, config.start, config.seed)
    tick, task = tick_callback(progress, f"{config.procedure} walk ({config.mode})")
    trajectory = run_procedure(
        stats,
        train,
        test,
        mode=config.mode,
        procedure=config.procedure,
        params=config.params,
        eps=config.eps,
        progress=tick,
        measure=config.measure,
    )
    task.close()
    targets = list(config.targets) if config.targets else None
    selection: dict[str, Any]
    if config.separation is not None:
        steps, supported = separated_steps(stats, trajectory, config, progress)
        levels = len(steps)
        selection = {"levels": levels, "targets": None, "start": config.start,
                     "separation": config.separation, "supported_levels": supported}
    else:
        levels = config.levels or DEFAULT_LEVELS  # None beside targets; recorded as 8
        steps = select_ladder(trajectory, k=levels, targets=targets)
        selection = {"levels": levels, "targets": targets, "start": config.start}
    rows = [(s.distance, s.is_start, s.train, s.test, s.removed) for s in steps]
    if config.train_size is not None:
        selection["train_size"], rows = trim_train_sets(stats, steps, config)
    return finish_splitfile(manifest, featureset, config, stats, progress, rows, selection,
                   dict(trajectory.params), _measure_record(config, stats, steps),
                   hierarchy if config.semantic else None)


def split_distances(stats: ClassStats, sides: Sequence[tuple[Sequence[str], Sequence[str]]],
                    mode: str, eps: float | None) -> list[float]:
    """The Fréchet distance of each (train, test) pair, as the class-means walks compute it
    (:meth:`oodml.stats.means_distance.MeansDistance.distance`) or, in samples mode, with
    :func:`oodml.stats.modes.distance_within`."""
    if mode == "class-means":
        md = stats.means_distance(distance_mode(mode).eps(eps))
        return [md.distance(stats.indices(a), stats.indices(b)) for a, b in sides]
    return [distance_within(stats, a, b, mode, eps) for a, b in sides]


def _hierarchy_rows(manifest: Any, stats: ClassStats, config: LadderConfig,
                    hierarchy: Hierarchy | None) -> tuple[list, dict, dict, None]:
    """(rows, selection, params, measure) of the hierarchy ladder."""
    if hierarchy is None:
        raise ConfigError(f"dataset {manifest.name!r} has no superclasses; pass --hierarchy "
                          "FILE.csv (rows class,superclass) for procedure 'hierarchy'")
    params = config.params
    ladder = hierarchy_ladder(hierarchy, manifest.classes, params, config.seed,
                              config.levels or DEFAULT_LEVELS)
    dist = split_distances(stats, [(lv.train, lv.test) for lv in ladder.levels], config.mode,
                           config.eps)
    rows = [(d, False, lv.train, lv.test, lv.removed)
            for d, lv in zip(dist, ladder.levels, strict=True)]
    selection = {
        "levels": config.levels or DEFAULT_LEVELS,
        "supported_levels": ladder.supported_levels,
        "targets": None,
        "test_fixed": True,
        "test_superclasses": list(ladder.test_superclasses),
        "unseen_superclasses": [list(lv.unseen) for lv in ladder.levels],
    }
    record = params.record()
    if config.eps is not None:
        record["eps"] = config.eps
    return rows, selection, record, None


def finish_splitfile(manifest: Any, featureset: Any, config: LadderConfig, stats: ClassStats,
            progress: Progress, rows: list, selection: dict, params: dict,
            measure: dict | None, hierarchy: Hierarchy | None,
            procedure: str | None = None) -> SplitFile:
    """The split file of ``rows`` ((distance, is_start, train, test, removed) per split, in
    ladder order): sub-splits, semantic shift, distance intervals and paired differences.
    ``procedure`` names the ladder's procedure (default ``config.procedure``)."""
    class_paths = paths_by_class(manifest.labels, manifest.paths)
    ladder = [
        build_split(
            i,
            distance,
            is_start,
            train,
            test,
            removed,
            class_paths=class_paths,
            seed=config.seed,
            val_fraction=config.val_fraction,
            shots=config.shots,
            episodes=config.episodes,
        )
        for i, (distance, is_start, train, test, removed) in enumerate(rows, start=1)
    ]
    splitfile = SplitFile(
        dataset_name=manifest.name,
        dataset_fingerprint=manifest.fingerprint,
        class_counts=dict(manifest.class_counts),
        extractor=featureset.extractor,
        weights_sha256=featureset.weights_sha256,
        precision=featureset.precision,
        distance_mode=config.mode,
        procedure=procedure or config.procedure,
        params=params,
        seed=config.seed,
        ladder=ladder,
        oodml_version=__version__,
        selection=selection,
        subsplits={
            "val_fraction": config.val_fraction,
            "shots": sorted(config.shots),
            "episodes": config.episodes,
        },
        measure=measure,
    )
    if hierarchy is not None:
        splitfile = with_semantic(splitfile, hierarchy)
    if not config.bootstrap:
        return splitfile
    task = progress.task(f"distance intervals ({config.bootstrap} bootstraps a split)",
                         len(splitfile.ladder) * config.bootstrap)
    cis = ladder_cis(stats, splitfile, n_boot=config.bootstrap, tick=task.advance)
    task.close()
    splitfile = with_distance_cis(splitfile, cis)
    if config.measure != "frechet":
        return splitfile
    task = progress.task(f"paired differences ({config.bootstrap} bootstraps)", config.bootstrap)
    diffs = ladder_paired(stats, splitfile, n_boot=config.bootstrap, tick=task.advance,
                          route=paired_route(config.paired))
    task.close()
    splitfile = with_paired(splitfile, diffs, config.bootstrap, route=config.paired)
    if config.separation is not None:
        test = ladder_test(splitfile, config.separation)
        if test is not None and not test.all_separated:
            raise ConfigError(
                f"separation={config.separation:g}: the chosen levels are not all separated "
                f"on the final check ({test.statement(config.bootstrap)}); no file written, "
                "ask for fewer levels"
            )
    return splitfile


def separated_steps(
    stats: ClassStats, trajectory: Any, config: LadderConfig, progress: Progress = NO_PROGRESS
) -> tuple[list[Any], int]:
    """Levels of the walk whose adjacent pairs differ at ``config.separation`` (paired class
    bootstrap over up to SEPARATION_CANDIDATES steps spread in distance; Bonferroni over the
    chosen pairs, which implies Holm), and how many such levels the data supports.

    ``config.levels`` None takes them all; more levels than supported is a one-line
    ConfigError naming the supported count."""
    sep = float(config.separation)
    cands = select_ladder(trajectory, k=SEPARATION_CANDIDATES)
    distances = [s.distance for s in cands]
    if len(cands) < 2:
        supported = len(cands)
        p = np.ones((len(cands), len(cands)))
    else:
        engine = PairedLadder(stats, [(s.train, s.test) for s in cands], config.mode, config.eps,
                              route=paired_route(config.paired))
        task = progress.task(f"separation: paired bootstrap of {len(cands)} walk steps",
                             config.bootstrap)
        reps = engine.replicates(config.bootstrap, np.random.default_rng(paired_seed(config.seed)),
                                 task.advance)
        task.close()
        p = pair_p_values(distances, reps)
        supported = supported_levels(p, sep)
    k = supported if config.levels is None else int(config.levels)
    if k > supported or supported < 2:
        raise ConfigError(
            f"separation={sep:g}: the walk supports {supported} level"
            f"{'s' if supported != 1 else ''} whose adjacent pairs differ at {100 * sep:g}% "
            f"(paired class bootstrap, B = {config.bootstrap}, Holm), not {k}; ask for "
            f"levels={supported} or fewer, or a lower separation"
            if supported >= 2 else
            f"separation={sep:g}: no two steps of the walk differ at {100 * sep:g}% (paired "
            f"class bootstrap, B = {config.bootstrap}); lower the separation"
        )
    picks = separated_chain(distances, p, sep, k)
    return [cands[i] for i in picks], supported


def check_generation_cost(manifest: Any, config: LadderConfig) -> None:
    """Refuse, before features or the walk, a ladder whose few-shot episodes cannot fit a split
    file (:data:`MAX_SUPPORT_PATHS`).

    Upper bound of the paths: every walk step keeps or shrinks the start's test side (swaps keep
    the counts, removals shrink them), so a split's episodes for ``s`` shots hold at most
    ``s * min(n_test, #classes with > s images)`` paths each; times ``episodes``, summed over
    the shot counts, times the number of splits asked for."""
    _, test = start_classes(manifest, config.start, config.seed)
    counts = list(dict(manifest.class_counts).values())
    per_episode = sum(
        s * min(len(test), sum(1 for n in counts if n >= s + 1)) for s in config.shots
    )
    levels = len(config.targets) if config.targets is not None else config.levels
    total = int(levels or DEFAULT_LEVELS) * config.episodes * per_episode
    if total > MAX_SUPPORT_PATHS:
        raise ConfigError(
            f"episodes={config.episodes} with shots={list(config.shots)} on {len(test)} test "
            f"classes and {levels} levels would store up to {total:,} support image paths in "
            f"the split file (at most {MAX_SUPPORT_PATHS:,}); lower episodes, shots or levels"
        )


def _measure_record(config: LadderConfig, stats: ClassStats, steps: Sequence[Any]
                    ) -> dict[str, Any] | None:
    """The split file's ``measure`` entry: None for frechet, else the measure's settings and,
    for a measure whose values come from a solver (w2-classes), the solvers that produced the
    recorded distances (``solvers``)."""
    if config.measure == "frechet":
        return None
    measure = get_measure(config.measure)
    record = measure.record()
    solvers = sorted({measure(stats, stats.indices(s.train), stats.indices(s.test),
                              config.mode, config.eps).solver or "" for s in steps} - {""})
    if solvers:
        record["solvers"] = solvers
    return record


def size_warnings(splitfile: SplitFile, stats: ClassStats) -> list[str]:
    """One-line warnings when the smallest side over the ladder of ``splitfile`` has fewer
    classes than its measure needs to be stable, or (samples-mode Fréchet) fewer images than
    dimensions."""
    if not splitfile.ladder:
        return []
    measure = get_measure(splitfile.measure_name)
    n_train = min(len(s.train) for s in splitfile.ladder)
    n_test = min(len(s.test) for s in splitfile.ladder)
    images = (min(int(stats.counts[stats.indices(s.train)].sum()) for s in splitfile.ladder),
              min(int(stats.counts[stats.indices(s.test)].sum()) for s in splitfile.ladder))
    return measure.size_warnings(n_train, n_test, splitfile.distance_mode, stats.dim, images)


def start_classes(manifest: Any, start: str, seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The starting split: ``default`` (the dataset's), ``random`` (seeded halves) or ``auto``
    (default when the dataset has one, else random)."""
    if start not in START_CHOICES:
        raise ConfigError(f"unknown start {start!r}; choose one of: {', '.join(START_CHOICES)}")
    has_default = bool(manifest.default_train and manifest.default_test)
    use_default = start == "default" or (start == "auto" and has_default)
    return start_split(
        manifest.classes,
        manifest.default_train,
        manifest.default_test,
        None if use_default else seed,
    )
