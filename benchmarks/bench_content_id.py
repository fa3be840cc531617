"""Cost of the dataset content identity that keys the feature cache, on N tiny image files.

Measured in one run on the same folder (page cache warm after the listing, as when a user reruns
a command): listing and building the manifest (``load_dataset``, the reference: every command
pays it already), the names fingerprint, the stat-based ``content_id`` (one ``os.stat`` per
image, what ``get_features`` adds to every call, twice on a cache miss) and the portable
``content_sha256`` (reads and hashes every byte). Also the zip form: ``content_id`` from the
central directory of a zip holding the same files.

Usage: python benchmarks/bench_content_id.py [--images 120000] [--classes 1000]
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from oodml.data import load_dataset
from oodml.data.manifest import content_id_of, content_sha256, fingerprint_of


def tiny_png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=120_000)
    ap.add_argument("--classes", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    blobs = [tiny_png(rng) for _ in range(64)]
    tmp = Path(tempfile.mkdtemp(prefix="oodml-bench-content-"))
    try:
        root = tmp / "ds"
        per_class = args.images // args.classes
        _, t_write = timed(
            lambda: [
                (root / f"c{c:04d}").mkdir(parents=True)
                or [
                    (root / f"c{c:04d}" / f"{i:05d}.png").write_bytes(blobs[(c + i) % 64])
                    for i in range(per_class)
                ]
                for c in range(args.classes)
            ]
        )
        n = per_class * args.classes
        print(f"{n} images of {len(blobs[0])} bytes in {args.classes} folders "
              f"(written in {t_write:.1f} s)")
        m, t_list = timed(lambda: load_dataset("imagefolder", root))
        _, t_fp = timed(lambda: fingerprint_of(m.labels, m.paths))
        _, t_cid = timed(lambda: content_id_of(m.source, m.labels, m.paths))
        _, t_cid2 = timed(lambda: content_id_of(m.source, m.labels, m.paths))
        _, t_sha = timed(lambda: content_sha256(m))
        zpath = tmp / "images_background.zip"
        with zipfile.ZipFile(zpath, "w") as zf:
            for rel in m.paths:
                zf.write(root / rel, "images_background/a/" + rel)
        mz, t_zlist = timed(lambda: load_dataset("omniglot", zpath))
        _, t_zcid = timed(lambda: content_id_of(mz.source, mz.labels, mz.paths))
        rows = [
            ("folder: list + manifest (reference)", t_list),
            ("folder: names fingerprint", t_fp),
            ("folder: content_id (stat per file)", t_cid),
            ("folder: content_id again", t_cid2),
            ("folder: content_sha256 (read + hash all)", t_sha),
            ("zip: list + manifest (reference)", t_zlist),
            ("zip: content_id (central directory)", t_zcid),
        ]
        for name, secs in rows:
            ref = t_list if name.startswith("folder") else t_zlist
            print(f"{name:44s} {secs:8.3f} s  {1e6 * secs / n:7.2f} us/image  "
                  f"{secs / ref:6.2f}x reference")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
