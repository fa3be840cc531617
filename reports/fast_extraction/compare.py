"""bf16-autocast features of the Omniglot subset against fp32: per-image relative difference,
and the published greedy ladder rescored on each (per-split distances, order, swaps).

The bf16 features come from ``extract_bf16.py`` (an .npy, one row per manifest image, NaN for
images not yet extracted: it visits the classes round-robin so a partial run covers every
class with the same number of images). Both precisions are compared on exactly the images the
bf16 file holds; the fp32 distances on all images (the published ones) are shown beside them.

    python reports/fast_extraction/compare.py BF16.npy
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import scipy.stats as sps

from oodml.data import load_dataset
from oodml.features import get_features
from oodml.splits.rescore import rescore
from oodml.splits.splitfile import load_splitfile
from oodml.stats.class_stats import ClassStats

REPO = Path(__file__).resolve().parents[2]
LADDER = REPO / "splits" / "omniglot_small1_efficientnet-lite0_class-means_greedy.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bf16", type=Path)
    args = ap.parse_args()
    data = Path(os.environ.get("OODML_DATA", REPO.parent / "shared" / "data"))
    manifest = load_dataset("omniglot", data / "omniglot" / "images_background_small1.zip")
    fp32 = get_features(manifest, "efficientnet-lite0")
    bf16 = np.load(args.bf16, allow_pickle=False)
    done = np.isfinite(bf16).all(axis=1)
    labels = np.asarray(manifest.labels)
    per_class = {c: int(done[labels == c].sum()) for c in manifest.classes}
    print(f"images compared: {done.sum()} of {len(done)}; per class: "
          f"{min(per_class.values())}-{max(per_class.values())}")
    a, b = fp32.features[done].astype(np.float64), bf16[done].astype(np.float64)
    rel = np.linalg.norm(b - a, axis=1) / np.linalg.norm(a, axis=1)
    elem = np.abs(b - a).max() / np.abs(a).max()
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"per-image ||bf16 - fp32|| / ||fp32||: max {rel.max():.3e}, median "
          f"{np.median(rel):.3e}; max |diff| / max |fp32| {elem:.3e}; min cosine {cos.min():.5f}")
    sf = load_splitfile(LADDER)
    kept = [lab for lab, d in zip(manifest.labels, done, strict=True) if d]
    r32 = rescore(sf, ClassStats.from_features(fp32.features[done], kept), extractor="fp32")
    r16 = rescore(sf, ClassStats.from_features(bf16[done], kept), extractor="bf16")
    print("split  published(fp32, all images)  fp32(same images)  bf16(same images)  "
          "rel diff")
    for i, sid in enumerate(r32.split_ids):
        d32, d16 = r32.rescored[i], r16.rescored[i]
        print(f"{sid:5d}  {sf.ladder[i].distance:27.4f}  {d32:17.4f}  {d16:17.4f}  "
              f"{(d16 - d32) / d32:+.2e}")
    tau = sps.kendalltau(r32.rescored, r16.rescored).statistic
    o32, o16 = np.argsort(r32.rescored), np.argsort(r16.rescored)
    print(f"Kendall tau fp32 vs bf16 (same images): {tau:.3f}; order of splits "
          f"{'unchanged' if np.array_equal(o32, o16) else 'CHANGED'}; "
          f"adjacent gaps: smallest fp32 gap {np.diff(np.sort(r32.rescored)).min():.3f}, "
          f"largest |bf16 - fp32| {np.abs(np.subtract(r16.rescored, r32.rescored)).max():.3f}")


if __name__ == "__main__":
    main()
