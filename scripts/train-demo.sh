#!/bin/sh
# Rebuild the bundled demo model (facestyle/assets/demo) from scratch on a CPU.
#   1. the generator: 20-30 minutes on 2 cores (1800 steps of the demo preset), stored in float16
#   2. the style bank, the style mean, the skin and hair mapping networks and flows: about 2 minutes
# The generator is halved before step 2 because banks and networks record its file's hash.
# Usage: sh scripts/train-demo.sh [RUN_DIR]   (default: runs/demo)
set -eu
RUN=${1:-runs/demo}
FS=${FACESTYLE:-.venv/bin/facestyle}
PY=${PYTHON:-.venv/bin/python}
DEMO=facestyle/assets/demo

$FS train --preset demo --data synthetic:2000 --out "$RUN/generator"
rm -rf "$DEMO"
mkdir -p "$DEMO"
cp "$RUN/generator/final/config.json" "$RUN/generator/final/model.safetensors" "$DEMO/"
$PY scripts/half-precision.py "$DEMO/model.safetensors"
$FS encode-styles --checkpoint "$DEMO" --data synthetic:2000 --split train --resolution 128 \
    --out "$RUN/bank.safetensors" --overwrite
$FS style-mean --checkpoint "$DEMO" --bank "$RUN/bank.safetensors"
for region in skin hair; do
    rm -rf "$RUN/mapping-$region" "$RUN/flow-$region"
    $FS train-mapping --preset demo --bank "$RUN/bank.safetensors" --region "$region" \
        --checkpoint "$DEMO" --out "$RUN/mapping-$region"
    $FS train-flow --preset demo --objective flow-matching --bank "$RUN/bank.safetensors" \
        --region "$region" --checkpoint "$DEMO" --out "$RUN/flow-$region"
done
$PY scripts/half-precision.py "$DEMO/mapping" "$DEMO/flow"
du -sh "$DEMO"
