"""Hostile and unusual imports (issue 28): study pickles and split files that are well-formed but
say something wrong, and the published-ladder path import -> evaluate -> report end to end."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from oodml.errors import SplitFileError
from oodml.results import read_results

from reference import one_line_error

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_oodml.json"


# --- item 7: an imported ladder evaluates, adapts and reports ------------------------------


def test_imported_published_ladder_evaluates_fewshots_and_reports(
    tmp_path, cli, omniglot_zip, omniglot_features, omniglot_features_cache
):
    """export-oodml -> import-oodml (a file without a seed) -> evaluate --head-only -> fewshot
    -> report. Before the fix the gallery draw got seed None and both commands crashed."""
    from dataclasses import replace

    from oodml.splits.splitfile import load_splitfile, save_splitfile

    pkl, sf_path, out = tmp_path / "study.pkl", tmp_path / "imported.json", tmp_path / "runs"
    # the published ladder's first two splits with one 2-shot episode each (fast to move around)
    sf = load_splitfile(PUBLISHED)
    ladder = [replace(s, episodes={2: s.episodes[2][:1]}, episodes_skipped={})
              for s in sf.ladder[:2]]
    published = save_splitfile(replace(sf, ladder=ladder), tmp_path / "published.json")
    code, _, err = cli("splits", "export-oodml", str(published), "-o", str(pkl))
    assert code == 0, err
    code, _, err = cli("splits", "import-oodml", str(pkl), "-o", str(sf_path),
                       "--dataset", "omniglot", "--root", str(omniglot_zip))
    assert code == 0, err
    assert json.loads(sf_path.read_text())["seed"] is None
    common = [str(sf_path), "--root", str(omniglot_zip), "--head-only",
              "--extractor", "efficientnet-lite0", "--cache", str(omniglot_features_cache),
              "--out", str(out), "--loss", "contrastive", "--epochs", "1", "--batch-size", "32",
              "--m", "4", "--splits", "1", "--no-checkpoints", "--gallery-classes", "20",
              "--gallery-draws", "3", "--device", "cpu"]
    code, _, err = cli("evaluate", *common)
    assert code == 0, err
    code, _, err = cli("fewshot", *common, "--shots", "2", "--max-episodes", "1",
                       "--ft-epochs", "1")
    assert code == 0, err
    table = read_results(out)
    zeroshot = table[table["protocol"] == "zeroshot"]
    sized = zeroshot[zeroshot["metric"] == "recall@1/n20"]
    assert len(sized) == 1 and 0.0 < float(sized["value"].iloc[0]) <= 1.0
    assert set(table["protocol"]) == {"zeroshot", "fewshot"}
    assert np.isfinite(table["value"].astype(float)).all()
    # the gallery seed the draws used is recorded in the config (the file has none)
    for config in table["config"]:
        assert json.loads(config)["gallery"] == {"classes": 20, "draws": 3, "seed": 0}
    code, _, err = cli("report", str(out), "--out", str(tmp_path / "report"))
    assert code == 0, err
    assert (tmp_path / "report" / "index.html").is_file()


def test_gallery_seed_of_a_file_without_one_is_the_fixed_default(tmp_path):
    """The draws of an imported file are those of a file with seed GALLERY_SEED: the same
    galleries for every method and training seed (not the training seed)."""
    from dataclasses import replace

    from oodml.metrics.sizecontrol import draw_classes
    from oodml.splits.oodml_pickle import import_oodml
    from oodml.train.run import GALLERY_SEED, gallery_seed

    unseeded = import_oodml(_write(tmp_path, _study(n_test=12)))
    assert unseeded.seed is None and gallery_seed(unseeded) == GALLERY_SEED == 0
    seeded = replace(unseeded, seed=7)
    assert gallery_seed(seeded) == 7
    classes = list(unseeded.ladder[0].test)
    a = draw_classes(classes, 5, 3, gallery_seed(unseeded))
    b = draw_classes(classes, 5, 3, gallery_seed(replace(unseeded, seed=0)))
    c = draw_classes(classes, 5, 3, gallery_seed(seeded))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def _study(n_test: int = 4) -> dict:
    """A small study-layout dict: one split, 2-shot episodes over its test classes."""
    train = [f"tr{i}" for i in range(4)]
    test = [f"te{i}" for i in range(n_test)]
    episodes = {2: {0: {c: [f"{c}_a.png", f"{c}_b.png"] for c in test}}}
    return {1: {"train": train, "test": test, "fid": 3.5, "test_episodes": episodes}}


def _write(tmp_path: Path, obj, name: str = "s.pkl") -> Path:
    p = tmp_path / name
    p.write_bytes(pickle.dumps(obj, protocol=4))
    return p


def test_study_helper_imports(tmp_path):
    from oodml.splits.oodml_pickle import import_oodml

    sf = import_oodml(_write(tmp_path, _study()))
    assert sf.ladder[0].episodes[2][0]["te0"] == ["te0_a.png", "te0_b.png"]
    with pytest.raises(SplitFileError):
        import_oodml(_write(tmp_path, {}))


# --- item 3: episodes of the wrong size, wrong classes, support images of another class ------


@pytest.fixture(scope="module")
def omniglot(omniglot_zip):
    from oodml.data import load_dataset

    return load_dataset("omniglot", omniglot_zip)


@pytest.fixture(scope="module")
def study_dict():
    """The published Omniglot ladder in the study's pickle layout (relative image paths)."""
    from oodml.splits.oodml_pickle import to_oodml
    from oodml.splits.splitfile import load_splitfile

    return to_oodml(load_splitfile(PUBLISHED))


def _copy(d):
    return pickle.loads(pickle.dumps(d))


def test_import_refuses_a_support_set_with_extra_images(tmp_path, omniglot, study_dict):
    """Issue: three images added to one 2-shot support set were imported and used as 2-shot."""
    from oodml.splits.oodml_pickle import import_oodml

    d = _copy(study_dict)
    ep = d[1]["test_episodes"][2][0]
    cls = sorted(ep)[0]
    others = [p for p, c in zip(omniglot.paths, omniglot.labels, strict=True)
              if c == cls and p not in ep[cls]]
    ep[cls] = ep[cls] + others[:3]
    path = _write(tmp_path, d)
    for manifest in (omniglot, None):
        with pytest.raises(SplitFileError) as err:
            import_oodml(path, manifest=manifest)
        msg = str(err.value)
        assert "\n" not in msg and str(path) in msg
        assert f"split 1: 2-shot episode 0 has 1 support set(s) of the wrong size, e.g. class " \
               f"{cls!r} has 5 support image(s), not 2" in msg


def test_import_refuses_a_support_image_of_another_class(tmp_path, omniglot, study_dict):
    from oodml.splits.oodml_pickle import import_oodml

    d = _copy(study_dict)
    ep = d[2]["test_episodes"][5][1]
    a, b = sorted(ep)[:2]
    ep[a] = [ep[b][0], *ep[a][1:]]
    with pytest.raises(SplitFileError, match=rf"support image .* of class {a!r} is an image of "
                       rf"class {b!r}") as err:
        import_oodml(_write(tmp_path, d), manifest=omniglot)
    assert "\n" not in str(err.value)


def test_import_refuses_an_episode_missing_a_test_class(tmp_path):
    from oodml.splits.oodml_pickle import import_oodml

    d = _study()
    d[1]["test_episodes"][2][1] = dict(d[1]["test_episodes"][2][0])
    del d[1]["test_episodes"][2][1]["te3"]
    with pytest.raises(SplitFileError, match="split 1: 2-shot episode 1 does not cover the "
                       "test classes: no support images for 'te3'"):
        import_oodml(_write(tmp_path, d))


def test_import_records_a_class_no_episode_covers_as_skipped(tmp_path):
    """A class left out of every k-shot episode (the study skips classes too small for k
    shots; an exported split file with ``episodes_skipped`` exports it so) is recorded in
    ``episodes_skipped``, not silently dropped, and the file round-trips."""
    from oodml.splits.oodml_pickle import import_oodml, to_oodml
    from oodml.splits.splitfile import load_splitfile, save_splitfile

    d = _study()
    del d[1]["test_episodes"][2][0]["te3"]
    sf = import_oodml(_write(tmp_path, d))
    assert sf.ladder[0].episodes_skipped == {2: ("te3",)}
    saved = load_splitfile(save_splitfile(sf, tmp_path / "s.json"))
    again = import_oodml(_write(tmp_path, to_oodml(saved), "again.pkl"))
    assert again.ladder == saved.ladder


def test_split_file_with_a_wrong_size_episode_is_refused_on_load(tmp_path, cli, omniglot_zip):
    """load_splitfile (evaluate, fewshot, show, ...) checks episode sizes like the checksum;
    verify lists the same line."""
    from test_splitfile import resign

    from oodml.splits.splitfile import load_for_verify, load_splitfile

    path = tmp_path / "bad.json"
    path.write_bytes(PUBLISHED.read_bytes())

    def damage(doc):
        ep = doc["ladder"][2]["episodes"]["5"][3]
        cls = sorted(ep)[4]
        ep[cls] = ep[cls][:4]

    resign(path, damage)
    cls = sorted(json.loads(path.read_text())["ladder"][2]["episodes"]["5"][3])[4]
    line = (f"split 3: 5-shot episode 3 has 1 support set(s) of the wrong size, e.g. class "
            f"{cls!r} has 4 support image(s), not 5")
    with pytest.raises(SplitFileError) as err:
        load_splitfile(path)
    assert line in str(err.value) and "\n" not in str(err.value)
    assert line in load_for_verify(path)[1]
    code, out, _ = cli("fewshot", str(path), "--root", str(omniglot_zip), "--loss",
                       "softmax", "--out", str(tmp_path / "o"))
    assert line in one_line_error(code, _)
    code, out, _ = cli("splits", "verify", str(path), "--root", str(omniglot_zip),
                       "--no-distances")
    assert code == 1 and out.count(line) == 1, out


def test_fewshot_refuses_a_support_image_of_another_class(tmp_path, cli):
    """The loader cannot know an image's class; fewshot checks it against the dataset before
    any training (one line naming split, shots and class)."""
    from test_splitfile import resign

    from oodml.train.synthetic import make_synthetic_study

    st = make_synthetic_study(tmp_path / "st", n_splits=1)

    def damage(doc):
        ep = doc["ladder"][0]["episodes"]["2"][1]
        a, b = sorted(ep)[:2]
        ep[a] = [ep[b][0], ep[a][1]]

    resign(st.splitfile, damage)
    code, _, err = cli("fewshot", str(st.splitfile), "--root", str(st.root), "--cache",
                       str(st.cache_dir), "--out", str(tmp_path / "o"), "--loss", "softmax",
                       "--shots", "2", "--epochs", "1", "--batch-size", "12", "--no-checkpoints")
    line = one_line_error(code, err)
    assert "split 1: 2-shot episode 1: support image" in line
    assert "is an image of class" in line
    assert not (tmp_path / "o" / "runs").exists()


# --- item 6: minor silent cases ----------------------------------------------------------------


def test_import_refuses_a_negative_distance(tmp_path):
    from oodml.splits.oodml_pickle import import_oodml

    d = _study()
    d[1]["fid"] = -0.5
    with pytest.raises(SplitFileError, match=r"split 1 'fid': distance -0.5 must be a finite "
                       r"number >= 0"):
        import_oodml(_write(tmp_path, d))


def test_verify_without_distances_reports_a_negative_distance(tmp_path, cli, omniglot_zip):
    from test_splitfile import resign

    from oodml.splits.splitfile import load_splitfile

    path = tmp_path / "neg.json"
    path.write_bytes(PUBLISHED.read_bytes())
    resign(path, lambda doc: doc["ladder"][0].update(distance=-1.25))
    with pytest.raises(SplitFileError, match=r"ladder\[0\].distance is negative \(-1.25\)"):
        load_splitfile(path)
    code, out, _ = cli("splits", "verify", str(path), "--root", str(omniglot_zip),
                       "--no-distances")
    assert code == 1 and "ladder[0].distance is negative (-1.25)" in out, out


@pytest.mark.parametrize("keys", [(1, "1"), ("2", 2), (3, " 3")])
def test_two_split_keys_naming_one_split_are_refused(tmp_path, keys):
    """Before: 1 and '1' became splits 1 and 2 (the same split counted twice)."""
    from oodml.splits.oodml_pickle import import_oodml

    one = _study()[1]
    d = {keys[0]: one, keys[1]: _copy(one)}
    with pytest.raises(SplitFileError, match=rf"keys {keys[0]!r} and {keys[1]!r} both name "
                       rf"split {int(keys[0])}; keep one") as err:
        import_oodml(_write(tmp_path, d))
    assert "\n" not in str(err.value)


def test_two_shot_keys_naming_one_shot_count_are_refused(tmp_path):
    """Before: shot keys 2 and '2' kept one episode set and dropped the other."""
    from oodml.splits.oodml_pickle import import_oodml

    d = _study()
    eps = d[1]["test_episodes"]
    eps["2"] = _copy(eps[2])
    with pytest.raises(SplitFileError, match="keys 2 and '2' both name shot count 2; keep one"):
        import_oodml(_write(tmp_path, d))


def test_string_split_keys_are_ordered_as_numbers(tmp_path):
    from oodml.splits.oodml_pickle import import_oodml

    d = {}
    for k, fid in (("10", 3.0), ("2", 1.0), ("9", 2.0)):
        d[k] = {**_study()[1], "fid": fid}
    sf = import_oodml(_write(tmp_path, d))
    assert [s.distance for s in sf.ladder] == [1.0, 2.0, 3.0]


def _train(st, out: Path, *extra: str) -> list[str]:
    return ["evaluate", str(st.splitfile), "--root", str(st.root), "--cache", str(st.cache_dir),
            "--out", str(out), "--epochs", "1", "--batch-size", "12", "--no-checkpoints", *extra]


@pytest.mark.parametrize("loss", ["triplet", "contrastive", "multisimilarity", "margin"])
def test_m1_with_a_pair_based_loss_is_refused(tmp_path, cli, study, loss):
    code, _, err = cli(*_train(study, tmp_path / "o", "--loss", loss, "--m", "1"))
    line = one_line_error(code, err)
    assert f"m=1 puts one image per class in a batch, so the pair/triplet-based loss {loss!r} " \
           "sees no positive pair and trains nothing; use --m 2 or more" in line
    assert not (tmp_path / "o" / "runs").exists()


def test_m1_with_a_classifier_loss_trains(tmp_path, cli, study):
    """Proxy and classifier losses learn from one image per class: m=1 stays allowed."""
    code, _, err = cli(*_train(study, tmp_path / "o", "--loss", "softmax", "--m", "1",
                                      "--batch-size", "6"))
    assert code == 0, err


def test_pair_based_losses_really_see_no_gradient_at_m1():
    """The property the refusal rests on, for the losses marked ``needs_pairs``: with distinct
    labels (m=1) the loss has no gradient pulling a class together (zero for the purely
    pair/triplet losses); classifier losses do have one."""
    import torch

    from oodml.train.losses import build_loss, loss_info

    torch.manual_seed(0)
    emb = torch.randn(8, 16, requires_grad=True)
    labels = torch.arange(8)
    for name in ("triplet", "margin", "lifted", "supcon", "ntxent", "circle"):
        assert loss_info(name).needs_pairs
        loss = build_loss(name, num_classes=8, embedding_size=16, args=None)(emb, labels, None)
        grad = torch.autograd.grad(loss, emb, allow_unused=True)[0] if loss.requires_grad else None
        assert grad is None or float(grad.abs().sum()) == 0.0, name
    for name in ("softmax", "proxyanchor", "arcface"):
        assert not loss_info(name).needs_pairs
        loss = build_loss(name, num_classes=8, embedding_size=16, args=None)(emb, labels, None)
        assert float(torch.autograd.grad(loss, emb)[0].abs().sum()) > 0, name


# --- unclear messages: empty sides, a single test class, a 100 kB class name ------------------


def _resigned_study(tmp_path: Path, edit):
    from test_splitfile import resign

    from oodml.train.synthetic import make_synthetic_study

    st = make_synthetic_study(tmp_path / "st", n_splits=2)
    resign(st.splitfile, edit)
    return st


def _move(doc, split: int, frm: str, to: str, keep: int) -> None:
    s = doc["ladder"][split]
    s[to] = s[to] + s[frm][keep:]
    s[frm] = s[frm][:keep]
    for k in ("val_train", "val"):
        s[k] = [c for c in s[k] if c in s["train"]]
    for eps in s["episodes"].values():
        for ep in eps:
            for c in [c for c in ep if c not in s["test"]]:
                del ep[c]


@pytest.mark.parametrize(
    ("frm", "to", "keep", "message"),
    [
        ("train", "removed", 0, "split 1 of .* has no train classes, so there is nothing to "
         "train on"),
        ("test", "removed", 0, "split 1 of .* has no test classes, so there is nothing to "
         "evaluate"),
        ("test", "removed", 1, r"split 1 of .* has a single test class \('class\d\d'\); "
         "retrieval needs at least 2 test classes"),
    ],
)
def test_empty_or_single_class_sides_are_named(tmp_path, cli, frm, to, keep, message):
    """Before: "batch size 8 is larger than the 0 training images", "embeddings: no embeddings
    to evaluate", "gallery_classes=1 must be >= 2"."""
    st = _resigned_study(tmp_path, lambda doc: _move(doc, 0, frm, to, keep))
    code, _, err = cli(*_train(st, tmp_path / "o", "--loss", "softmax", "--splits", "1"))
    assert_matches(one_line_error(code, err), message)


def test_a_single_class_split_elsewhere_in_the_ladder_names_it(tmp_path, cli):
    """The default gallery size is the ladder's smallest test side: a split with one test
    class is named, with the way out."""
    st = _resigned_study(tmp_path, lambda doc: _move(doc, 1, "test", "removed", 1))
    code, _, err = cli(*_train(st, tmp_path / "o", "--loss", "softmax", "--splits", "1"))
    line = one_line_error(code, err)
    assert "split 2 of" in line and "has 1 test class(es)" in line
    assert "--gallery-classes 0" in line
    code, _, err = cli(*_train(st, tmp_path / "o", "--loss", "softmax", "--splits", "1",
                                       "--gallery-classes", "0"))
    assert code == 0, err


def assert_matches(line: str, pattern: str) -> None:
    import re

    assert re.search(pattern, line), line


def test_a_100kb_class_name_is_cut_in_errors(tmp_path, cli):
    from oodml.splits.oodml_pickle import import_oodml
    from oodml.splits.splitfile import load_splitfile

    huge = "k" * 100_000
    st = _resigned_study(tmp_path, lambda doc: doc["ladder"][0]["test"].append(huge))
    with pytest.raises(SplitFileError) as err:
        load_splitfile(st.splitfile)
    assert len(str(err.value)) < 600 and "(100000 characters)" in str(err.value)
    code, _, err_text = cli(*_train(st, tmp_path / "o", "--loss", "softmax"))
    line = one_line_error(code, err_text)
    assert len(line) < 600 and "(100000 characters)" in line
    from oodml.data import load_dataset

    d = _study()
    d[1]["test"].append(huge)
    with pytest.raises(SplitFileError) as err:
        import_oodml(_write(tmp_path, d), manifest=load_dataset("imagefolder", st.root))
    assert len(str(err.value)) < 600 and "(100000 characters)" in str(err.value)
