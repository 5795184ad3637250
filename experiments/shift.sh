#!/usr/bin/env bash
# The numbers behind docs/robustness.md: robustness to sensor changes, NEOWISE -> NEO Surveyor
# transfer (zero-shot, fine-tuning learning curves), online learning with forgetting measured, and
# suspect labels. Seeded end to end; about 25 minutes on 2 cores. Run from the repository root
# after `make setup`:   bash experiments/shift.sh [OUT]
set -euo pipefail
OUT=${1:-runs/shift}
NEOQA=${NEOQA:-.venv/bin/neoqa}
NW=data/neowise-default
NS=data/neosurveyor-20k
[ -f "$NW/manifest.json" ] || "$NEOQA" simulate --workers 2 --quiet
[ -f "$NS/manifest.json" ] || "$NEOQA" simulate --survey neosurveyor --sheets 20000 --seed 1 --workers 2 --out "$NS" --quiet
MODELS="ridge mlp gbdt basic_sneon sneon"
for m in $MODELS; do
  [ -f "$OUT/models/$m/model.json" ] || "$NEOQA" train --model "$m" --data "$NW" --out "$OUT/models/$m"
done
mkdir -p "$OUT/zero_shot"
for m in $MODELS; do   # trained on NEOWISE, scored unchanged on NEO Surveyor and on NEOWISE
  "$NEOQA" evaluate --model "$OUT/models/$m" --data "$NS" --json > "$OUT/zero_shot/$m-neosurveyor.json"
  "$NEOQA" evaluate --model "$OUT/models/$m" --data "$NW" --json > "$OUT/zero_shot/$m-neowise.json"
done
"$NEOQA" robustness --model $(for m in $MODELS; do echo "$OUT/models/$m"; done) --data "$NW" --out "$OUT/robustness" --sheets 3000
for m in gbdt basic_sneon; do
  "$NEOQA" learning-curve --model "$OUT/models/$m" --data "$NS" --out "$OUT/transfer-$m" --labels 10 100 1000 --seeds 3
done
"$NEOQA" stream --model "$OUT/models/basic_sneon" --data "$NS" --old-data "$NW" --out "$OUT/stream" --batches 5 --batch-size 500
# Suspect labels in use: train on the data less the flagged sheets, set triage thresholds on the
# labels less the flagged sheets, judge on the full test split.
"$NEOQA" suspects --data "$NW" --out "$OUT/suspects.csv" --prune "$OUT/neowise-pruned"
"$NEOQA" train --model gbdt --data "$OUT/neowise-pruned" --out "$OUT/models/gbdt-pruned"
for r in 0.99 0.995 0.999; do
  "$NEOQA" triage --model "$OUT/models/gbdt" --data "$NW" --recall $r --out "$OUT/triage-noisy-$r.parquet" --json > "$OUT/triage-noisy-$r.json"
  "$NEOQA" triage --model "$OUT/models/gbdt-pruned" --data "$NW" --labels "$OUT/suspects.csv" --recall $r --out "$OUT/triage-pruned-$r.parquet" --json > "$OUT/triage-pruned-$r.json"
done
