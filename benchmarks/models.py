"""Model benchmark: every model of the zoo on the same twin dataset (the paper's Table 1 on our data).

    python benchmarks/models.py [--out benchmarks/results/models] [--start 2021-01-01 --end 2021-12-31]
                                [--epochs 6] [--models convgru-sa,convgru,...] [--export] [--resume]

Same as ``sstbc benchmark``. Writes results.json, results.md and benchmark.png under --out.
"""

from __future__ import annotations

import sys

from bias_correction.training.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
