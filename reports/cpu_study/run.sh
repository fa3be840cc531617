#!/usr/bin/env bash
# The CPU study: head-only training on cached efficientnet-lite0 features of the Omniglot
# subset, every split of the published ladder, four methods, three seeds.
# Usage (from the repository root): bash reports/cpu_study/run.sh
set -euo pipefail
SPLITS=${SPLITS:-splits/omniglot_small1_efficientnet-lite0_class-means_greedy.json}
ROOT=${ROOT:-${OODML_DATA:-../shared/data}/omniglot/images_background_small1.zip}
OUT=${OUT:-reports/cpu_study}
COMMON=(--root "$ROOT" --head-only --seeds 0,1,2 --epochs 10 --batch-size 64 --m 4 --lr 1e-3
        --no-checkpoints --out "$OUT")
source "$(dirname "$0")/losses.sh"
evaluate_four_losses "$SPLITS" "${COMMON[@]}"
# the oodml procedure's ladder (two-sided removal: the test set shrinks), where size-controlled
# metrics matter
S2=splits/omniglot_small1_efficientnet-lite0_class-means_oodml.json
O2=(--root "$ROOT" --head-only --seeds 0,1,2 --epochs 10 --batch-size 64 --m 4 --lr 1e-3
    --no-checkpoints --out "$OUT/oodml_ladder")
oodml evaluate "$S2" "${O2[@]}" --loss multisimilarity
oodml evaluate "$S2" "${O2[@]}" --loss proxyanchor --loss-lr-mult 100
# few-shot adaptation of the multi-similarity model (head fine-tuned on each episode's support
# images, 2 and 5 shots, 10 episodes each)
oodml fewshot "$SPLITS" "${COMMON[@]}" --loss multisimilarity --shots 2,5
