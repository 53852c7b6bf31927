"""Store every model.safetensors under a checkpoint folder in float16 (halves the bundled demo's size).

Weights are rounded to float16 for storage only: load_pretrained casts them back to the dtype asked for.
Usage: python scripts/half-precision.py CHECKPOINT_DIR
"""

import sys
from pathlib import Path

from facestyle.checkpoint import load_tensors, save_tensors

for path in sorted(Path(sys.argv[1]).rglob("model.safetensors")):
    tensors = load_tensors(path)
    save_tensors({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, path)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MB")
