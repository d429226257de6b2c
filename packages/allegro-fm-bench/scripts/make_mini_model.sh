#!/usr/bin/env bash
# Remakes Allegro-FM-mini end to end: label data at two levels of theory, align them with tea-align,
# train the mini preset with allegro-fm-model, evaluate on held-out frames, package the model.
# Run from the repository root inside the dev environment with the datagen extra installed:
#   pip install -e "packages/allegro-fm-bench[datagen]"      (PySCF, dftd3, SevenNet)
#   bash packages/allegro-fm-bench/scripts/make_mini_model.sh [OUT] [EPOCHS]
# About 40 min of labelling and 30-60 min of training on 2 CPU cores. Every stage resumes when rerun.
set -euo pipefail
OUT=${1:-runs/mini}
EPOCHS=${2:-120}
mkdir -p "$OUT"

# 1. labels (the two parts are independent: one core each)
OMP_NUM_THREADS=1 allegro-fm-bench make-mini-data -o "$OUT/data" --part pbe --threads 1 > "$OUT/data-pbe.log" 2>&1 &
OMP_NUM_THREADS=1 allegro-fm-bench make-mini-data -o "$OUT/data" --part molecular --threads 1 > "$OUT/data-molecular.log" 2>&1 &
wait

# 2. Total Energy Alignment onto the PBE level (ICEA from isolated H, C, O; AEC scale from molecule anchors)
tea-align fit "$OUT/data/pbe.extxyz,name=mini-pbe" "$OUT/data/molecular.extxyz,name=mini-wb97m" \
  --anchors "$OUT/data/anchors/pbe.extxyz" "$OUT/data/anchors/molecular.extxyz" \
  --target "PBE~SevenNet-0" -o "$OUT/alignment.json"
tea-align report "$OUT/alignment.json" -o "$OUT/alignment-report"
tea-align apply "$OUT/data/pbe.extxyz,name=mini-pbe" "$OUT/data/molecular.extxyz,name=mini-wb97m" \
  --alignment "$OUT/alignment.json" -o "$OUT/aligned.h5"

# 3. training (mini preset: FM64 widths, l_max 1), 8:1:1 loss, 80/10/10 split
cat > "$OUT/train.toml" <<TOML
[train]
dataset = "aligned.h5"
run_dir = "train"
preset = "mini"
max_epochs = $EPOCHS
batch_size = 4
learning_rate = 0.002
val_fraction = 0.1
test_fraction = 0.1
accelerator = "cpu"
devices = 1
seed = 0
TOML
allegro-fm train "$OUT/train.toml"

# 4. held-out errors per source and element, and the deployable file
allegro-fm evaluate "$OUT/train/best.ckpt" "$OUT/aligned.h5" --split test -o "$OUT/test_errors.md"
allegro-fm export "$OUT/train/best.ckpt" -o "$OUT/allegro-fm-mini.nequip.zip"
echo "done: $OUT/allegro-fm-mini.nequip.zip; errors in $OUT/test_errors.md"
