"""Store model.safetensors files in float16 (halves the bundled demo's size).

Weights are rounded to float16 for storage only: loading casts them back to the dtype asked for.
Usage: python scripts/half-precision.py PATH...   (a model.safetensors file, or a folder searched for them)
"""

import sys
from pathlib import Path

from facestyle.checkpoint import load_tensors, save_tensors

for arg in sys.argv[1:]:
    root = Path(arg)
    for path in [root] if root.is_file() else sorted(root.rglob("model.safetensors")):
        tensors = load_tensors(path)
        save_tensors({k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}, path)
        print(f"{path}: {path.stat().st_size / 2**20:.1f} MB")
