"""Shared fixtures. Real data comes from $OODML_DATA (default: ../shared/data beside the repo).

Tests that need the data fail, never skip, when it is missing: CI must prove they ran.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def no_downloads():
    """Tests never reach the network: weights downloads are off unless a test (the loopback
    server tests) turns them back on."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OODML_OFFLINE", "1")
        yield


@pytest.fixture
def cli(capsys: pytest.CaptureFixture) -> Callable[..., tuple[int, str, str]]:
    """Run the `oodml` command line in-process: ``cli(*args) -> (exit code, stdout, stderr)``
    (arguments go through ``str``; output captured since the last call is returned)."""
    from oodml_cli import main

    def run(*args: object) -> tuple[int, str, str]:
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory):
    """A small synthetic study on disk (images, cached features, a two-split ladder with 2- and
    5-shot episodes): what the training, few-shot and CLI tests run on. Tests must not change
    its files."""
    from oodml.train.synthetic import make_synthetic_study

    return make_synthetic_study(
        tmp_path_factory.mktemp("study"), n_splits=2, shots=(2, 5), n_episodes=3
    )


def data_dir() -> Path:
    return Path(os.environ.get("OODML_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def oodml_data() -> Path:
    d = data_dir()
    if not (d / "omniglot" / "images_background_small1.zip").is_file():
        pytest.fail(f"test data missing: set OODML_DATA to the shared data folder (looked in {d})")
    return d


@pytest.fixture(scope="session")
def omniglot_zip(oodml_data: Path) -> Path:
    return oodml_data / "omniglot" / "images_background_small1.zip"


@pytest.fixture(scope="session")
def omniglot_features_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A feature cache folder shared by the whole test session (pass it as --cache).

    Set ``OODML_TEST_FEATURE_CACHE`` to a persistent folder to reuse features across sessions.
    """
    persistent = os.environ.get("OODML_TEST_FEATURE_CACHE")
    if persistent:
        return Path(persistent)
    return tmp_path_factory.mktemp("omniglot_features_cache")


@pytest.fixture(scope="session")
def omniglot_features(omniglot_zip: Path, omniglot_features_cache: Path):
    """(manifest, FeatureSet) of the Omniglot subset with efficientnet-lite0, extracted once per
    test session into ``omniglot_features_cache``."""
    from oodml.data import load_dataset
    from oodml.features import get_features

    manifest = load_dataset("omniglot", omniglot_zip)
    features = get_features(
        manifest, "efficientnet-lite0", cache_dir=omniglot_features_cache
    )
    return manifest, features
