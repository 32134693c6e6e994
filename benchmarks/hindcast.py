"""Rolling-origin hindcast: 4 fixed seasonal test windows, several seeds, operational baselines, paired CIs.

    python benchmarks/hindcast.py [--out benchmarks/results/hindcast] [--preset default|full|levers]
                                  [--windows winter,summer] [--learned ...] [--seeds 0,1,2] [--epochs 6]

Same as ``sstbc hindcast``. Writes results.json, results.md and hindcast.png under --out; per-window,
per-seed predictions are cached under --out/rows/ so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import logging
import sys

from bias_correction.training.hindcast import run_hindcast
from bias_correction.training.hindcast_config import add_arguments, config_from_args, output_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/hindcast.py", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    out = output_dir(a)
    res = run_hindcast(config_from_args(a), out)
    print((out / "results.md").read_text())
    return 0 if res["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
