"""The access-strategy registries: config names map to strategies, unknown names fail listing the known ones."""

from __future__ import annotations

import datetime as dt

import pytest

from bias_correction.config import Http, Region
from bias_correction.errors import ConfigError
from bias_correction.sources import hycom, oisst
from bias_correction.sources.base import Registry, Source
from bias_correction.storage import Store

REGION = Region(name="t", lat_min=12.0, lat_max=16.0, lon_min=110.0, lon_max=114.0)


def test_registries_hold_the_config_values_in_order() -> None:
    assert hycom.ACCESS.names == ("ncss", "opendap", "files") == hycom.ACCESS_MODES
    assert oisst.ACCESS.names == ("https", "s3", "opendap")
    assert [s.name for s in oisst.ACCESS.choose(["s3", "https"])] == ["s3", "https"]


def test_unknown_names_list_the_known_ones(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"HYCOM access mode 'ftp' is not one of \('ncss', 'opendap', 'files'\)"):
        hycom.HycomSource("http://x", Store(str(tmp_path)), Http(), REGION, access="ftp")
    with pytest.raises(ConfigError, match=r"OISST access mode 'ftp' is not one of \('https', 's3', 'opendap'\)"):
        oisst.OisstSource("http://x", Store(str(tmp_path)), Http(), access=("https", "ftp"))


def test_a_mode_without_its_base_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="needs upstream.hycom_files"):
        hycom.HycomSource("http://x", Store(str(tmp_path)), Http(), REGION, access="files")


def test_duplicate_registration_is_refused() -> None:
    reg: Registry[object] = Registry("thing", [hycom.ACCESS["ncss"]])
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(hycom.ACCESS["ncss"])


def test_sources_follow_the_protocol(tmp_path) -> None:
    store = Store(str(tmp_path))
    h = hycom.HycomSource("http://x", store, Http(), REGION)
    o = oisst.OisstSource("http://x", store, Http(), region=REGION)
    assert isinstance(h, Source) and isinstance(o, Source)
    assert h.dims == ("lead", "lat", "lon") and o.dims == ("lat", "lon")


def test_cache_keys_carry_the_access_mode(tmp_path) -> None:
    run = hycom.run_time(dt.date(2021, 2, 10))
    ncss = hycom.HycomSource("http://x", Store(str(tmp_path)), Http(), REGION)
    dap = hycom.HycomSource("http://x", Store(str(tmp_path)), Http(), REGION, access="opendap", opendap_base="http://y")
    folder = "raw/hycom/GLBy0.08/expt_93.0/2021021012"
    assert ncss.raw_key(run) == f"{folder}/water_temp_0m_11.75_16.25_109.75_114.25.nc"
    assert dap.raw_key(run, "surf_el") == f"{folder}/surf_el_11.75_16.25_109.75_114.25_opendap.nc"
