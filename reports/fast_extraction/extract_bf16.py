"""bf16-autocast efficientnet-lite0 features of the Omniglot subset, the extraction path of
``oodml features --precision bf16`` (folded BatchNorm, channels-last, batches of 8), written
as an .npy (one row per manifest image, NaN until extracted).

Classes are visited round-robin (every class's first image, then every class's second, ...)
and the file is rewritten after each round, so a run stopped early still covers every class
with the same number of images; ``compare.py`` compares on exactly those images. On a CPU
without native bf16 this is slow (emulated bf16): a full run is ``oodml features omniglot
--root ZIP --extractor efficientnet-lite0 --precision bf16`` on a machine that has it.

    python reports/fast_extraction/extract_bf16.py OUT.npy
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from oodml.data import load_dataset
from oodml.features import load_extractor
from oodml.features.extract import inference_model, iter_batches

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    data = Path(os.environ.get("OODML_DATA", REPO.parent / "shared" / "data"))
    m = load_dataset("omniglot", data / "omniglot" / "images_background_small1.zip")
    lab = np.asarray(m.label_index)
    rank = np.zeros(len(lab), dtype=int)
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        rank[idx] = np.arange(len(idx))
    order = np.lexsort((lab, rank))
    n_classes = len(np.unique(lab))
    net = load_extractor("efficientnet-lite0")
    model = inference_model(net.model, torch.device("cpu"))
    feats = np.full((len(m), net.dim), np.nan, dtype=np.float32)
    visit = type(m)(m.name, m.root, m.source, tuple(m.paths[i] for i in order),
                    tuple(m.labels[i] for i in order))
    t0, pos = time.time(), 0
    tmp = args.out.with_name(args.out.name + ".tmp.npy")
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        for batch in iter_batches(visit, net.transform, net.collate, batch_size=8,
                                  num_workers=1, pin_memory=False):
            f = model(batch.contiguous(memory_format=torch.channels_last)).float().numpy()
            feats[order[pos:pos + len(f)]] = f
            pos += len(f)
            if pos % n_classes < len(f) or pos == len(m):
                np.save(tmp, feats)
                os.replace(tmp, args.out)
                print(f"{pos} images {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
