"""Typed ladder configuration: procedure parameter dataclasses, LadderConfig validation, the
distance-mode object, and the import plan of the splits layer."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from oodml.errors import ConfigError
from oodml.splits import GreedyParams, LadderConfig, OodmlParams, params_from_mapping
from oodml.splits.ladder import run_procedure, start_split
from oodml.stats.class_stats import ClassStats
from oodml.stats.gaussian import frechet_distance_samples
from oodml.stats.means_distance import CLASS_MEANS_EPS
from oodml.stats.modes import distance_between, distance_mode, distance_within

from reference import clustered

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "splits"


def published_params(procedure: str) -> dict:
    path = PUBLISHED / f"omniglot_small1_efficientnet-lite0_class-means_{procedure}.json"
    return json.loads(path.read_text())["procedure"]["params"]


@pytest.mark.parametrize("procedure", ["greedy", "oodml"])
def test_default_record_equals_the_published_params(procedure):
    """The published files were written by the dict-based code: same keys, same values
    (greedy's removal policy aside, which the file names: a boolean before policies)."""
    published = published_params(procedure)
    given = {"removal": published["removal"]} if procedure == "greedy" else {}
    record = params_from_mapping(procedure, "class-means", given).record()
    if procedure == "greedy":
        policy = published.pop("removal")
        assert record.pop("removal") == {True: "any", False: "none"}.get(policy, policy)
    assert record == published


def test_oodml_derived_defaults_written_once():
    p = OodmlParams(iterations=7).resolved()
    assert (p.removal_iterations, p.easier_iterations, p.easier_history) == (17, 7, 5)
    p = OodmlParams(iterations=7, history=2, removal_iterations=0).resolved()
    assert (p.removal_iterations, p.easier_history) == (0, 2)
    assert OodmlParams(iterations=7).total() == 7 + 7 + 17


def test_greedy_candidates_depend_on_mode():
    assert params_from_mapping("greedy", "samples", {}).candidates == 2
    assert params_from_mapping("greedy", "samples", {}).removal_candidates == 6
    p = params_from_mapping("greedy", "class-means", {"candidates": 4, "removal_candidates": 1})
    assert (p.candidates, p.removal_candidates) == (4, 1)


@pytest.mark.parametrize(
    "procedure, mapping, message",
    [
        ("oodml", {"removal_iterations": -1}, "removal_iterations=-1 must be an integer >= 0"),
        ("oodml", {"iterations": 0}, "iterations=0 must be an integer >= 1"),
        ("oodml", {"history": 1.5}, "history=1.5 must be an integer >= 0"),
        ("greedy", {"min_fraction": 2}, "min_fraction=2 must be a number in \\[0, 1\\]"),
        ("greedy", {"verify": True}, "verify=True must be an integer >= 1"),
        ("greedy", {"max_steps": "10"}, "max_steps='10' must be an integer >= 0"),
    ],
)
def test_bad_parameter_values_name_the_field(procedure, mapping, message):
    with pytest.raises(ConfigError, match=message):
        params_from_mapping(procedure, "class-means", mapping)


def test_unknown_keys_list_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown parameter 'swaps'.*valid: .*history.*"):
        params_from_mapping("oodml", "class-means", {"swaps": 3})
    with pytest.raises(ConfigError, match="unknown ladder procedure"):
        params_from_mapping("nope", "class-means", {})
    with pytest.raises(ConfigError, match="unknown distance mode"):
        params_from_mapping("greedy", "cosine", {})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"levels": 0}, "levels=0 must be an integer >= 1"),
        ({"targets": [20, float("nan")]}, "targets=.* must be finite numbers"),
        ({"start": "middle"}, "start='middle' is unknown"),
        ({"val_fraction": 1.0}, "val_fraction=1.0 must be a number in \\[0, 1\\)"),
        ({"shots": (2, 0)}, "shots=\\[2, 0\\] must be positive integers"),
        ({"episodes": 0}, "episodes=0 must be an integer >= 1"),
        ({"eps": -1.0}, "eps=-1.0 must be a finite number >= 0"),
        ({"mode": "cosine"}, "unknown distance mode 'cosine'"),
        ({"procedure": "oodml", "params": {"candidates": 3}}, "unknown parameter 'candidates'"),
        ({"procedure": "oodml", "params": GreedyParams()}, "takes OodmlParams"),
        ({"seed": 1.5}, "seed=1.5 must be an integer"),
    ],
)
def test_ladder_config_rejects_bad_options_naming_the_field(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        LadderConfig(**kwargs)


def test_ladder_config_resolves_params_and_eps():
    cfg = LadderConfig(mode="samples", params={"max_steps": 3, "eps": 1e-6})
    assert isinstance(cfg.params, GreedyParams)
    assert (cfg.params.candidates, cfg.params.max_steps, cfg.eps) == (2, 3, 1e-6)
    assert LadderConfig(procedure="oodml").params == OodmlParams().resolved()
    assert LadderConfig(targets=[20, 40]).targets == (20.0, 40.0)


def test_dataclass_and_mapping_params_give_the_same_trajectory():
    x, labels = clustered(24, 5, 6, groups=3)
    stats = ClassStats.from_features(x, labels)
    tr, te = start_split(stats.classes, (), (), seed=0)
    a = run_procedure(stats, tr, te, procedure="oodml", params={"iterations": 5})
    b = run_procedure(stats, tr, te, procedure="oodml", params=OodmlParams(iterations=5))
    assert a == b and a.params == asdict(OodmlParams(iterations=5).resolved())
    c = run_procedure(stats, tr, te, params={"max_steps": 4, "eps": 1e-4})
    assert c.params["eps"] == 1e-4
    d = run_procedure(stats, tr, te, params=GreedyParams(max_steps=4), eps=1e-4)
    assert c == d


def test_distance_mode_object():
    x, labels = clustered(24, 5, 6, groups=3)
    stats = ClassStats.from_features(x, labels)
    a, b = stats.classes[:10], stats.classes[10:]
    cm, sm = distance_mode("class-means"), distance_mode("samples")
    assert (cm.default_eps, sm.default_eps) == (CLASS_MEANS_EPS, 0.0)
    assert cm.screens and not sm.screens
    ia, ib = stats.indices(a), stats.indices(b)
    ref = frechet_distance_samples(stats.means[ia], stats.means[ib], eps=CLASS_MEANS_EPS)
    assert distance_within(stats, a, b) == ref
    assert cm.evaluator(stats, ia, ib)(ia, ib) == pytest.approx(ref, rel=1e-9)
    rows_a, rows_b = np.isin(labels, a), np.isin(labels, b)
    ref_s = frechet_distance_samples(x[rows_a], x[rows_b])
    assert distance_within(stats, a, b, mode="samples") == pytest.approx(ref_s, rel=1e-9)
    assert sm.evaluator(stats, ia, ib)(ia, ib) == pytest.approx(ref_s, rel=1e-9)
    with pytest.raises(ConfigError, match="unknown distance mode 'nope'; choose one of"):
        distance_mode("nope")


def test_distance_between_two_feature_sets():
    """What ``oodml fid`` computes for two folders: all images, or all class means."""
    x, labels = clustered(24, 5, 6, groups=3)
    half = len(labels) // 2
    sa = ClassStats.from_features(x[:half], labels[:half])
    sb = ClassStats.from_features(x[half:], labels[half:])
    assert distance_between(sa, sb, "samples") == frechet_distance_samples(x[:half], x[half:])
    assert distance_between(sa, sb, "class-means") == frechet_distance_samples(
        sa.means, sb.means, eps=CLASS_MEANS_EPS
    )
    assert distance_between(sa, sb, "samples", eps=0.5) == frechet_distance_samples(
        x[:half], x[half:], eps=0.5
    )
    one = ClassStats.from_features(x[:5], labels[:5])
    with pytest.raises(ConfigError, match="at least 2 classes"):
        distance_between(one, sb, "class-means")


def test_walks_limit_blas_threads_only_through_the_one_limiter(monkeypatch):
    """BLAS thread counts change rounding, so the walks set them in one place: every limit
    taken during a greedy and an oodml walk comes from oodml.stats.blas_threads."""
    import sys

    from threadpoolctl import ThreadpoolController

    callers = []
    real = ThreadpoolController.limit

    def spy(self, *args, **kwargs):
        callers.append(sys._getframe(1).f_globals["__name__"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ThreadpoolController, "limit", spy)
    x, labels = clustered(24, 5, 6, groups=3)
    stats = ClassStats.from_features(x, labels)
    tr, te = start_split(stats.classes, (), (), seed=0)
    for procedure in ("greedy", "oodml"):
        run_procedure(stats, tr, te, procedure=procedure, params={"max_steps": 3}
                      if procedure == "greedy" else {"iterations": 3})
    assert callers and set(callers) == {"oodml.stats.blas_threads"}


def test_a_targets_config_copies_with_replace_and_levels_defaults_to_8():
    """levels stays None beside targets, so dataclasses.replace does not see both given."""
    from dataclasses import replace

    from oodml.splits.generate import LadderConfig

    cfg = LadderConfig(targets=(20, 40))
    assert cfg.levels is None and replace(cfg, seed=1).targets == (20.0, 40.0)
    assert LadderConfig().levels == 8 and replace(LadderConfig(), seed=1).levels == 8
    with pytest.raises(ConfigError, match="levels=3 and targets=.* both given"):
        LadderConfig(levels=3, targets=(20,))
