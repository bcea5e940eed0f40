#!/usr/bin/env bash
# Training-seed spread of the headline comparison (docs/RESULTS.md): method $1 (adapter_r16 | full)
# trained again with seeds 1 and 2 on all five held-out tasks from the benchmark's own train
# configs (runs/metaworld, after `vla-adapter benchmark --config config/benchmark/metaworld.yaml`),
# 30 evaluation episodes each. Resumable (skips finished evaluations). Run the two methods side by
# side on 2 cores: ~35 min. Table: python scripts/experiments/seeds_main_table.py
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
eval "$(scripts/env.sh)"
export OMP_NUM_THREADS=1
m=${1:?usage: seeds_main.sh adapter_r16|full}
for s in 1 2; do for t in coffee-button faucet-open handle-press plate-slide basketball; do
  n=$(echo $t | tr - _); out=runs/exp/seeds_main/$t/$m-s$s
  [ -f $out/eval/results.json ] && continue
  mkdir -p $(dirname $out)
  [ -d $out/checkpoint ] || [ -d $out/adapters ] || vla-adapter train --config runs/metaworld/finetune/$t-v3/$m/train_config.json \
      --set seed=$s --set progress=false --out-dir $out > $out.train.log 2>&1
  if [ $m = full ]; then
    vla-adapter eval --checkpoint $out/checkpoint --task $t --episodes 30 --no-progress --out $out/eval > $out.eval.log 2>&1
  else
    vla-adapter eval --checkpoint runs/metaworld/pretrain/checkpoint --adapter $out/adapters/$n --task $t --episodes 30 --no-progress --out $out/eval > $out.eval.log 2>&1
  fi
  echo "$t $m s$s: $(tail -n 3 $out.eval.log | head -1)"
done; done
echo ALL DONE
