# The CPU studies' four methods (sourced by run.sh, run_trainsize.sh and reports/semantic/run.sh):
# evaluate_four_losses SPLITFILE [oodml evaluate options...] runs one `oodml evaluate` per loss.
evaluate_four_losses() {
  local splits=$1
  shift
  oodml evaluate "$splits" "$@" --loss multisimilarity
  oodml evaluate "$splits" "$@" --loss triplet --loss-args margin=0.2 --miner triplet-semihard
  oodml evaluate "$splits" "$@" --loss proxyanchor --loss-lr-mult 100
  oodml evaluate "$splits" "$@" --loss softmax
}
