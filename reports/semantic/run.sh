#!/usr/bin/env bash
# The semantic study: head-only training on cached efficientnet-lite0 features of the Omniglot
# subset, every level of the hierarchy ladder, the four methods of reports/cpu_study, three
# seeds. Usage (from the repository root): bash reports/semantic/run.sh
set -euo pipefail
SPLITS=${SPLITS:-splits/omniglot_small1_efficientnet-lite0_class-means_hierarchy.json}
ROOT=${ROOT:-${OODML_DATA:-../shared/data}/omniglot/images_background_small1.zip}
OUT=${OUT:-reports/semantic/results}
COMMON=(--root "$ROOT" --head-only --seeds 0,1,2 --epochs 10 --batch-size 64 --m 4 --lr 1e-3
        --no-checkpoints --out "$OUT")
source "$(dirname "$0")/../cpu_study/losses.sh"
evaluate_four_losses "$SPLITS" "${COMMON[@]}"
