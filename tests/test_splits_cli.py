"""`oodml splits` end to end on the real Omniglot subset with efficientnet-lite0 features."""

from __future__ import annotations

import pickle
import shutil
import zipfile
from pathlib import Path

import matplotlib.image as mpimg
import pytest

from oodml.splits.splitfile import is_strictly_increasing, load_splitfile, verify
from oodml.stats.class_stats import ClassStats
from oodml.stats.modes import distance_within
from oodml_cli import main

COMMANDS = ("generate", "show", "verify", "import-oodml", "export-oodml", "plot")


BOOTSTRAP = 50
"""Class resamples of the generated ladders: enough to exercise every interval and the paired
differences (the published files use the default 200, checked in test_removal_policy)."""


@pytest.fixture(scope="module")
def generated(
    omniglot_features, omniglot_features_cache: Path, omniglot_zip: Path, tmp_path_factory
) -> dict[str, Path]:
    """Greedy and oodml ladders generated through the CLI (features already cached)."""
    out = tmp_path_factory.mktemp("cli")
    files = {}
    for procedure in ("greedy", "oodml"):
        files[procedure] = out / f"{procedure}.json"
        main(
            [
                "splits",
                "generate",
                "omniglot",
                "--root",
                str(omniglot_zip),
                "--extractor",
                "efficientnet-lite0",
                "--mode",
                "class-means",
                "--procedure",
                procedure,
                "--levels",
                "5",
                "--episodes",
                "2",
                "--bootstrap",
                str(BOOTSTRAP),
                "--cache",
                str(omniglot_features_cache),
                "-o",
                str(files[procedure]),
            ]
        )
    return files


def test_help_for_every_command(cli) -> None:
    for command in COMMANDS:
        code, out, _ = cli("splits", command, "--help")
        assert code == 0 and "Usage" in out and "--" in out


def test_generate_options_are_the_ladder_config_fields() -> None:
    """Every LadderConfig field is a `splits generate` option with the field's help (params as
    the repeatable --param, eps through --param eps=...), and the options' defaults build the
    library's default config."""
    import dataclasses

    import typer

    from oodml.splits.generate import LadderConfig
    from oodml_cli import app
    from oodml_cli.options import build

    command = typer.main.get_command(app).commands["splits"].commands["generate"]
    options = {p.name: p for p in command.params}
    for f in dataclasses.fields(LadderConfig):
        if f.name == "eps":
            continue
        option = options["param" if f.name == "params" else f.name]
        assert option.help == f.metadata["help"] and option.help, f.name
    assert options["param"].multiple
    defaults = {name: p.default for name, p in options.items()}
    assert build(LadderConfig, defaults, params={}) == LadderConfig()
    assert LadderConfig(params={"eps": 1e-6}).eps == 1e-6


def test_generate_is_deterministic_and_sound(
    generated: dict[str, Path],
    omniglot_features,
    omniglot_features_cache: Path,
    omniglot_zip: Path,
    cli,
    tmp_path: Path,
) -> None:
    manifest, features = omniglot_features
    again = tmp_path / "again.json"
    code, out, _ = cli(
        "splits",
        "generate",
        "omniglot",
        "--root",
        omniglot_zip,
        "--procedure",
        "greedy",
        "--levels",
        "5",
        "--episodes",
        "2",
        "--bootstrap",
        BOOTSTRAP,
        "--cache",
        omniglot_features_cache,
        "-o",
        again,
    )
    assert code == 0 and "start" in out and "#tr/te/rm" in out
    assert again.read_bytes() == generated["greedy"].read_bytes()
    stats = ClassStats.from_features(features.features, features.labels)
    for procedure, path in generated.items():
        sf = load_splitfile(path)
        assert sf.procedure == procedure and len(sf.ladder) == 5
        assert sf.dataset_fingerprint == manifest.fingerprint
        assert sf.weights_sha256 == features.weights_sha256
        assert is_strictly_increasing(s.distance for s in sf.ladder)
        assert sum(s.is_start for s in sf.ladder) == 1
        start = next(s for s in sf.ladder if s.is_start)
        assert set(start.train) == set(manifest.default_train)
        for s in sf.ladder:
            assert set(s.train) | set(s.test) | set(s.removed) == set(manifest.classes)
            d = distance_within(stats, s.train, s.test, mode="class-means")
            assert d == pytest.approx(s.distance, rel=1e-6)
            assert sorted(s.episodes) == [2, 5, 10] and all(
                len(e) == 2 for e in s.episodes.values()
            )
        assert verify(sf, manifest, features) == []


def test_show_and_verify_ok(
    generated: dict[str, Path],
    omniglot_features_cache: Path,
    omniglot_zip: Path,
    cli,
) -> None:
    sf = load_splitfile(generated["greedy"])
    code, out, _ = cli("splits", "show", generated["greedy"])
    assert code == 0
    for s in sf.ladder:
        assert f"{s.distance:.4f}" in out
    code, out, _ = cli(
        "splits",
        "verify",
        generated["greedy"],
        "--root",
        omniglot_zip,
        "--cache",
        omniglot_features_cache,
    )
    assert code == 0 and "OK (5 splits)" in out


def test_verify_lists_every_problem(
    generated: dict[str, Path],
    omniglot_zip: Path,
    tmp_path: Path,
    cli,
) -> None:
    with zipfile.ZipFile(omniglot_zip) as zf:
        zf.extractall(tmp_path)
    root = next(p for p in tmp_path.iterdir() if p.is_dir())
    sf = load_splitfile(generated["greedy"])
    gone = sf.ladder[0].train[0]
    shutil.rmtree(root / gone)
    image = sf.ladder[-1].episodes[2][0][sf.ladder[-1].test[-1]][0]
    (root / image).unlink()
    code, out, _ = cli("splits", "verify", generated["greedy"], "--root", root, "--no-distances")
    assert code == 1
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert any("fingerprint" in p for p in problems)
    assert any(gone in p and "dataset has no such class" in p for p in problems)
    assert any("episode image(s) not in the dataset" in p for p in problems)
    assert f"{len(problems)} problem(s)" in out and len(problems) >= 3 + len(sf.ladder) - 1


def test_hand_edited_file_is_one_line_error(
    generated: dict[str, Path], tmp_path: Path, cli
) -> None:
    edited = tmp_path / "edited.json"
    text = generated["greedy"].read_text()
    edited.write_text(text.replace('"is_start": true', '"is_start": false', 1))
    code, _, err = cli("splits", "show", edited)
    assert code == 2 and "checksum mismatch" in err and err.count("\n") == 1


def test_verify_reports_a_hand_edit_and_goes_on_checking(
    generated: dict[str, Path], omniglot_zip: Path, tmp_path: Path,
    cli,
) -> None:
    """verify lists the checksum mismatch and what the edit broke: a class dropped from a split
    and distances no longer increasing."""
    import json

    doc = json.loads(generated["greedy"].read_text())
    lost = doc["ladder"][1]["train"].pop()
    doc["ladder"][1]["val_train"] = [c for c in doc["ladder"][1]["val_train"] if c != lost]
    doc["ladder"][1]["val"] = [c for c in doc["ladder"][1]["val"] if c != lost]
    doc["ladder"][2]["distance"] = doc["ladder"][0]["distance"] / 2
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(doc))
    code, out, _ = cli("splits", "verify", edited, "--root", omniglot_zip, "--no-distances")
    problems = [line for line in out.splitlines() if line.startswith("problem:")]
    assert code == 1
    assert any("checksum mismatch" in p for p in problems)
    assert any("split 2: 1 dataset class(es) in neither" in p and lost in p for p in problems)
    assert any("not strictly increasing" in p for p in problems)


def test_export_import_round_trip(
    generated: dict[str, Path],
    omniglot_zip: Path,
    tmp_path: Path,
    cli,
) -> None:
    sf = load_splitfile(generated["oodml"])
    pkl = tmp_path / "ladder.pkl"
    assert cli("splits", "export-oodml", generated["oodml"], "-o", pkl, "--basenames")[0] == 0
    assert sorted(pickle.loads(pkl.read_bytes())) == [1, 2, 3, 4, 5]
    back = tmp_path / "back.json"
    code, out, _ = cli(
        "splits", "import-oodml", pkl, "-o", back, "--dataset", "omniglot", "--root", omniglot_zip
    )
    assert code == 0 and "start" in out
    imported = load_splitfile(back)
    assert imported.dataset_fingerprint == sf.dataset_fingerprint
    for a, b in zip(sf.ladder, imported.ladder, strict=True):
        assert (a.train, a.test, a.removed, a.is_start) == (b.train, b.test, b.removed, b.is_start)
        assert (a.distance, a.val, a.episodes) == (b.distance, b.val, b.episodes)
    code, _, err = cli("splits", "import-oodml", pkl, "-o", back, "--dataset", "omniglot")
    assert code == 2 and "--dataset and --root go together" in err


def test_plot_writes_png_and_pdf(
    generated: dict[str, Path], tmp_path: Path, cli
) -> None:
    png = tmp_path / "ladder.png"
    code, out, _ = cli("splits", "plot", generated["greedy"], "-o", png, "--pdf")
    assert code == 0 and "ladder.pdf" in out
    img = mpimg.imread(png)
    assert img.shape[1] == 7 * 150 and img.shape[0] == round(5.2 * 150)
    assert img[..., :3].std() > 0.05
    assert png.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_published_omniglot_files_verify(omniglot_features) -> None:
    manifest, features = omniglot_features
    published = sorted((Path(__file__).resolve().parents[1] / "splits").glob("omniglot_*.json"))
    assert len(published) >= 3
    readme = (published[0].parent / "README.md").read_text()
    for path in published:
        sf = load_splitfile(path)
        assert path.name in readme and sf.dataset_fingerprint in readme and sf.sha256 in readme
        # distances are recomputed for the efficientnet-lite0 files; Inception features of the
        # 2720 images take 30-45 CPU minutes, so that file is checked without them
        same = sf.extractor == features.extractor
        assert verify(sf, manifest, features if same else None) == []
        if sf.ordered_by_semantics:  # a hierarchy ladder rises in its unseen share
            assert is_strictly_increasing(s.semantic["unseen_share"] for s in sf.ladder)
        else:
            assert is_strictly_increasing(s.distance for s in sf.ladder)
        assert all(s.distance_ci[0] <= s.distance <= s.distance_ci[1] for s in sf.ladder)


def test_split_file_writers_refuse_an_existing_file_without_force(
    generated: dict[str, Path],
    omniglot_zip: Path,
    omniglot_features_cache: Path,
    tmp_path: Path,
    cli,
) -> None:
    """generate, import-oodml and export-oodml never overwrite a file by accident: an
    existing --out is a one-line error naming it (before any work), the file keeps its bytes,
    and --force replaces it."""
    target = tmp_path / "published.json"
    target.write_bytes(generated["greedy"].read_bytes())
    before = target.read_bytes()
    args = ["generate", "omniglot", "--root", omniglot_zip, "--procedure", "oodml", "--levels",
            "3", "--episodes", "1", "--bootstrap", "0", "--cache", omniglot_features_cache,
            "-o", target]
    code, _, err = cli("splits", *args)
    assert code != 0 and str(target) in err and "--force" in err
    assert len(err.strip().splitlines()) == 1 and target.read_bytes() == before
    code, _, _ = cli("splits", *args, "--force")
    assert code == 0 and load_splitfile(target).procedure == "oodml"

    pkl = tmp_path / "ladder.pkl"
    assert cli("splits", "export-oodml", generated["oodml"], "-o", pkl)[0] == 0
    exported = pkl.read_bytes()
    code, _, err = cli("splits", "export-oodml", generated["greedy"], "-o", pkl)
    assert code != 0 and str(pkl) in err and "--force" in err and pkl.read_bytes() == exported
    assert cli("splits", "export-oodml", generated["greedy"], "-o", pkl, "--force")[0] == 0
    assert pkl.read_bytes() != exported
    assert cli("splits", "export-oodml", generated["oodml"], "-o", pkl, "--force")[0] == 0
    before = target.read_bytes()
    code, _, err = cli("splits", "import-oodml", pkl, "-o", target)
    assert code != 0 and "--force" in err and target.read_bytes() == before
    assert cli("splits", "import-oodml", pkl, "-o", target, "--force")[0] == 0
    assert target.read_bytes() != before
