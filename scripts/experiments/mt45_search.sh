#!/usr/bin/env bash
# The MT45 backbone's size search (docs/RESULTS.md, "MT45 backbone: the search"): configuration $1 pre-trained
# for a short run on 15 of the 45 base tasks (8 easy, 4 medium, 2 hard, 1 very hard: close to the 45's mix),
# then adapter r=16 on the two held-out tasks where the MT10 backbone's adapters fell short of full
# fine-tuning (handle-press, plate-slide). The benchmark pipeline does the work, in runs/mt45_search/$1:
# backbone success on the 15 training tasks (5 episodes each), adapter success (20 episodes each).
# Demonstrations are linked from $DEMOS (default runs/mt45/demos, the benchmark's), never recorded again.
# Resumable: rerun the same command. Table: python scripts/experiments/mt45_search_table.py
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
eval "$(scripts/env.sh)"
export OMP_NUM_THREADS=1
name=${1:?usage: mt45_search.sh p16|p16_stem|p12 [stage ...]}
shift
case $name in
  p16)      model='{"image_size": 96, "patch_size": 16, "d_model": 128, "n_heads": 4, "vision_layers": 3, "fusion_layers": 2, "chunk_length": 4}' ;;
  p16_stem) model='{"image_size": 96, "patch_size": 16, "stem_channels": 32, "d_model": 128, "n_heads": 4, "vision_layers": 3, "fusion_layers": 2, "chunk_length": 4}' ;;
  p12)      model='{"image_size": 96, "patch_size": 12, "d_model": 128, "n_heads": 4, "vision_layers": 3, "fusion_layers": 2, "chunk_length": 4}' ;;
  *) echo "unknown configuration $name" >&2; exit 2 ;;
esac
tasks='["assembly", "bin-picking", "box-close", "button-press", "button-press-topdown-wall", "coffee-push", "dial-turn",
        "disassemble", "door-lock", "door-open", "drawer-close", "faucet-close", "hammer", "hand-insert", "handle-pull-side"]'
heldout='["handle-press", "plate-slide"]'
out=runs/mt45_search/$name
demos=${DEMOS:-runs/mt45/demos}
mkdir -p "$out/demos"
for t in $(echo "$tasks $heldout" | tr -d '[],"'); do  # link what is recorded (a .done marker); held-out tasks
  [ -e "$out/demos/$t-v3" ] || [ ! -f "$demos/$t-v3/.done" ] || ln -s "$(realpath "$demos/$t-v3")" "$out/demos/$t-v3"
done                                                       # are needed from the finetune stage on
stages=()
for s in "${@:-pretrain finetune eval report}"; do for x in $s; do stages+=(--stage "$x"); done; done
exec nice -n 10 vla-adapter benchmark --config config/benchmark/mt45.yaml --no-progress \
  --set "out_dir=\"$out\"" --set "base_tasks=$tasks" --set "heldout_tasks=$heldout" --set "model=$model" \
  --set pretrain_steps=3000 --set eval_episodes=20 --set eval_workers=1 --set forgetting_episodes=5 \
  --set 'methods=[{"name": "adapter_r16", "regime": "adapter", "adapter": {"rank": 16}}]' "${stages[@]}"
