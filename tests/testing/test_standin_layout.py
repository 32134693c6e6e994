"""The stand-in package: each service registers its own routes; the format writers have one home each."""

from __future__ import annotations

import bias_correction.testing.formats as formats
from bias_correction.testing import standin
from bias_correction.testing.formats import hycom, nc3, oisst
from bias_correction.testing.standin.hycom_files import HycomFilesService
from bias_correction.testing.standin.ncei import NceiService
from bias_correction.testing.standin.ncss import NcssService
from bias_correction.testing.standin.opendap import OpendapService
from bias_correction.testing.standin.server import ServerCore


def test_every_service_registers_its_routes() -> None:
    own = {svc: {name for name, attr in vars(svc).items() if hasattr(attr, "_standin_route")}
           for svc in (NceiService, NcssService, OpendapService, HycomFilesService)}
    assert all(own.values()), own
    assert {r.handler for r in standin.StandInServer.routes} == set().union(*own.values())
    assert ServerCore.routes == ()


def test_routes_are_disjoint() -> None:
    samples = [
        "/thredds/dodsC/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_2021-02-10T12:00:00Z.dds",
        "/thredds/dodsC/OisstBase/NetCDF/V2.1/AVHRR/202102/oisst-avhrr-v02r01.20210210.nc.das",
        "/datasets/GLBy0.08/expt_93.0/data/forecasts/hycom_glby_930_2021021012_t003_ts3z.nc",
        "/datasets/ESPC-D-V02/data/forecasts/US058GCOM-OPSnce.espc-d-031-hycom_fcst_glby008_2024090112_t0003_ssh.nc",
        "/thredds/ncss/GLBy0.08/expt_93.0/FMRC/runs/GLBy0.08_930_FMRC_RUN_2021-02-10T12:00:00Z",
        "/thredds/ncss/grid/FMRC_ESPC-D-V02_t3z/runs/FMRC_ESPC-D-V02_t3z_RUN_2024-09-01T12:00:00Z",
        standin.OISST_PATH + "/",
        standin.OISST_PATH + "/202102/",
        standin.OISST_PATH + "/202102/oisst-avhrr-v02r01.20210210_preliminary.nc",
    ]
    for path in samples:
        hits = [r.handler for r in standin.StandInServer.routes if r.pattern.match(path)]
        assert len(hits) == 1, (path, hits)


def test_format_writers_re_export_the_same_objects() -> None:
    for name in formats.__all__:
        defined = [getattr(m, name) for m in (hycom, nc3, oisst) if hasattr(m, name)]
        assert defined and all(d is getattr(formats, name) for d in defined), name
