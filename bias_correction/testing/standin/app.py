"""The stand-in as tests and the CLI use it: the server core with every upstream service mounted.

Why: one loopback server plays NCEI (HTTPS tree, :mod:`.ncei`), HYCOM THREDDS NCSS (:mod:`.ncss`),
THREDDS OPeNDAP of both (:mod:`.opendap`) and the HYCOM data server's whole files (:mod:`.hycom_files`);
each service is a mixin that registers its own routes, so adding one is adding a base class here.

Run it by hand: ``python -m bias_correction.testing.standin --workdir DIR --today YYYY-MM-DD [--port N]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from bias_correction.testing.standin.hycom_files import HycomFilesService
from bias_correction.testing.standin.ncei import NceiService
from bias_correction.testing.standin.ncss import NcssService
from bias_correction.testing.standin.opendap import OpendapService
from bias_correction.testing.twin_presets import PRESETS, make_twin


class StandInServer(OpendapService, HycomFilesService, NcssService, NceiService):
    """ThreadingHTTPServer on loopback serving twin-generated OISST files, HYCOM NCSS subsets, OPeNDAP
    datasets and virtual whole forecast files, with the fault plan :attr:`faults` applied."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description="Loopback stand-in of the NCEI OISST and HYCOM NCSS services")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--today", type=date.fromisoformat, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--seed", type=int, default=None, help="twin seed (default: the preset's default)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="classic",
                        help="twin preset (bias_correction.testing.twin_presets; default classic)")
    args = parser.parse_args(argv)

    twin = make_twin(args.preset, args.seed)
    server = StandInServer(twin, args.workdir, args.today, host=args.host, port=args.port).start()
    print(f"base_url         {server.base_url}", flush=True)
    print(f"oisst_https_base {server.oisst_https_base}", flush=True)
    print(f"hycom_ncss_base  {server.hycom_ncss_base}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
