#!/usr/bin/env bash
# The CPU study's four losses under the train-size-controlled protocol: at every split of the
# published ladder, also train on N = 17 classes (the ladder's smallest train set, split 8's)
# drawn from the split's train classes, R draws per split and seed, evaluated on the full test
# set. The full-train runs are the committed ones (results.parquet), unpacked so that
# `oodml evaluate` checks and skips them.
# Usage (from the repository root): bash reports/cpu_study/run_trainsize.sh
set -euo pipefail
SPLITS=${SPLITS:-splits/omniglot_small1_efficientnet-lite0_class-means_greedy.json}
ROOT=${ROOT:-${OODML_DATA:-../shared/data}/omniglot/images_background_small1.zip}
OUT=${OUT:-reports/cpu_study/train_size}
R=${R:-2}
python reports/cpu_study/unpack_runs.py reports/cpu_study/results.parquet "$OUT"
COMMON=(--root "$ROOT" --head-only --seeds 0,1,2 --epochs 10 --batch-size 64 --m 4 --lr 1e-3
        --no-checkpoints --train-classes min --train-draws "$R" --out "$OUT")
source "$(dirname "$0")/losses.sh"
evaluate_four_losses "$SPLITS" "${COMMON[@]}"
