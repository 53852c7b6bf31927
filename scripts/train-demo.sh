#!/bin/sh
# Rebuild the bundled demo model (facestyle/assets/demo) from scratch on a CPU.
#   1. the generator: about 30 minutes on 2 cores (1800 steps of the demo preset)
#   2. the style bank, the skin and hair mapping networks and flows, and the style mean: a few minutes
# Usage: sh scripts/train-demo.sh [RUN_DIR]   (default: runs/demo)
set -eu
RUN=${1:-runs/demo}
FS=${FACESTYLE:-.venv/bin/facestyle}
DEMO=facestyle/assets/demo

$FS train --preset demo --data synthetic:2000 --out "$RUN/generator"
mkdir -p "$DEMO"
cp "$RUN/generator/final/config.json" "$RUN/generator/final/model.safetensors" "$DEMO/"
$FS encode-styles --checkpoint "$DEMO" --data synthetic:2000 --split train --resolution 128 \
    --out "$RUN/bank.safetensors" --overwrite
$FS style-mean --checkpoint "$DEMO" --bank "$RUN/bank.safetensors"
for region in skin hair; do
    $FS train-mapping --preset demo --bank "$RUN/bank.safetensors" --region "$region" \
        --checkpoint "$DEMO" --out "$RUN/mapping-$region"
    $FS train-flow --preset demo --objective flow-matching --bank "$RUN/bank.safetensors" \
        --region "$region" --checkpoint "$DEMO" --out "$RUN/flow-$region"
done
${PYTHON:-.venv/bin/python} scripts/half-precision.py "$DEMO"
du -sh "$DEMO"
