#!/bin/sh
# Rebuild the bundled demo model (facestyle/assets/demo) from scratch on a CPU, on synthetic faces only.
#   1. the generator with harmony supervision, MRSA's mlp mix and its code loss (the demo preset, 2500 steps):
#      about 43 minutes on a quiet AVX-512 machine (1 s a step), stored in float16
#   2. the style bank, the style mean, the skin and hair mapping networks and flows: about 2 minutes
#   3. a small DoveNet (800 steps) on synthetic composites, stored in CHECKPOINT/harmonizer: about 10 minutes
#      (measured on a slower AVX2 machine)
# The whole budget is at most 60 minutes on 2 cores (README, "The bundled demo model").
# Everything is built in RUN_DIR (a new or empty folder): the new demo checkpoint is RUN_DIR/demo. The
# package's copy is replaced only as the last step, once everything succeeded (facestyle itself never
# writes inside the installed package). The generator is halved before step 2 because banks and
# networks record its file's hash.
# Usage: sh scripts/train-demo.sh [RUN_DIR]   (default: runs/demo)
set -eu
RUN=${1:-runs/demo}
FS=${FACESTYLE:-.venv/bin/facestyle}
PY=${PYTHON:-.venv/bin/python}
DEMO=facestyle/assets/demo
BUILD="$RUN/demo"

if [ -e "$RUN" ] && [ -n "$(ls -A "$RUN")" ]; then
    echo "train-demo.sh: $RUN is not empty; give a new or empty folder" >&2
    exit 2
fi
$FS train --preset demo --data synthetic:2000 --out "$RUN/generator"

mkdir -p "$BUILD"
cp "$RUN/generator/final/config.json" "$RUN/generator/final/model.safetensors" "$BUILD/"
$PY scripts/half-precision.py "$BUILD/model.safetensors"
$FS encode-styles --checkpoint "$BUILD" --data synthetic:2000 --split train --resolution 128 \
    --out "$RUN/bank.safetensors"
$FS style-mean --checkpoint "$BUILD" --bank "$RUN/bank.safetensors"
for region in skin hair; do
    $FS train-mapping --preset demo --bank "$RUN/bank.safetensors" --region "$region" \
        --checkpoint "$BUILD" --out "$RUN/mapping-$region"
    $FS train-flow --preset demo --objective flow-matching --bank "$RUN/bank.safetensors" \
        --region "$region" --checkpoint "$BUILD" --out "$RUN/flow-$region"
done
$FS train-harmonizer --preset demo --out "$RUN/harmonizer" --install-to "$BUILD"
$PY scripts/half-precision.py "$BUILD/mapping" "$BUILD/flow" "$BUILD/harmonizer"

# The last step: the package's demo becomes the one just built.
rm -rf "$DEMO.new"
cp -R "$BUILD" "$DEMO.new"
rm -rf "$DEMO"
mv "$DEMO.new" "$DEMO"
du -sh "$DEMO"
