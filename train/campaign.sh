#!/usr/bin/env bash
# The training campaign: one schedule, resumed from its last checkpoint whenever it is run again.
#   bash train/campaign.sh            # start, or continue where the last run stopped
#   OUT=runs/other STEPS=20000 bash train/campaign.sh
#   MODULE=train.strength bash train/campaign.sh   # the blur strength of its samples (model card)
# Progress: tail -f $OUT/train.log; every evaluation's scores are in each $OUT/stepNNNNNN.pt and
# in the log; $OUT/best.pt is the best by sets 1, 3 and 4 (python -m train.evaluate to compare).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${DATA:-../shared/data}
OUT=${OUT:-runs/campaign}
STEPS=${STEPS:-3500}
EVAL=${EVAL:-875}
INIT=${INIT:-livesharp/weights/livesharp-tiny.pt}
# The training step on all cores but one, which the data worker renders samples on: on two cores
# 1.08-1.14x the steps per hour of a step on both (train/README.md, throughput).
CORES=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN)
THREADS=${THREADS:-$(( CORES > 1 ? CORES - 1 : 1 ))}
CLIP=$S/gopro240_GOPR0477_11_00/GOPR0477_11_00_240fps_frames000001-000299_x264rgb_crf10.mkv
STILLS="$S/urban100_hr_q95 $S/div2k_valid_subset $S/bsd100_hr_q95 $S/kodak24_crop500 $S/mcmaster18 $S/set5_set14 $S/pkg_images"
mkdir -p "$OUT"
RESUME=""
[ -f "$OUT/last.pt" ] && RESUME=--resume
MODULE=${MODULE:-train.distill}
[ "$MODULE" = train.distill ] && echo $$ > "$OUT/train.pid"
# Everything the run prints also goes to $OUT/train.log (appended across resumes); tee ignores
# Ctrl-C, so what the run says as it stops still reaches the terminal and the log.
[ "$MODULE" = train.distill ] && exec > >(trap "" INT; exec tee -a "$OUT/train.log") 2>&1
# exec: the pid written above is the trainer's, so `kill -STOP` pauses it for a benchmark
exec env GOMP_SPINCOUNT=20000 python -m "$MODULE" --init "$INIT" $RESUME \
  --highfps "$CLIP" --camera --motion $STILLS --soft "$CLIP" $STILLS \
  --soft-fraction 0.4 --motion-fraction 0.6 --linear-fraction 0.15 --sharp-fraction 0.1 --soft-sharp-fraction 0.3 \
  --val-real $S/gopro_real_pairs_val --val-sharp $S/gopro_test_sharp_frames --val-soft $S/gopro_test_sharp_frames \
  --batch 16 --clip-len 1 --crop 128 --curriculum 128 --w-fft 1 --workers 1 --threads "$THREADS" --reuse 1 --bank-window 4096 --compile \
  --lr 3e-4 --warmup 100 --seed 11 --steps "$STEPS" --eval-every "$EVAL" --ckpt-every 250 --out "$OUT" "$@"
