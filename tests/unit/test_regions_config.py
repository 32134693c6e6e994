"""Regions as a list: loading, the rejected mistakes, single-region back-compatibility, per-region paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from bias_correction import pipeline
from bias_correction import regions as regions_lib
from bias_correction.config import load_settings, settings_from_dict
from bias_correction.errors import ConfigError

MULTI = """storage_root = "{root}/data"
model_store = "{root}/models"
[[regions]]
name = "scs"
[[regions]]
name = "east"
lat_min = 12.0
lat_max = 14.0
lon_min = 114.0
lon_max = 116.0
model_id = "mean-bias"
model_version = "production"
"""


def test_single_region_config_is_the_one_element_list_and_keeps_its_paths(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'storage_root = "{tmp_path}/data"\n[region]\nname = "gulf"\nlat_min = 20.0\nlat_max = 24.0\n')
    s = load_settings(cfg)
    assert [r.name for r in s.regions] == ["gulf"] and s.regions[0] == s.region
    one = s.for_region()
    assert one == s.for_region("gulf")
    assert (one.storage_root, one.model_store, one.raw_cache_root) == (s.storage_root, s.model_store, None)
    assert one.fingerprint() == s.fingerprint()
    ctx = pipeline.make_context(one)
    assert ctx.store.root == ctx.oisst.store.root == ctx.hycom.store.root == str(tmp_path / "data")
    # the environment still overrides the one region
    assert load_settings(cfg, region={"lat_min": 21.0}).regions[0].lat_min == 21.0
    assert settings_from_dict(s.model_dump(mode="json")) == s


def test_multi_region_config_separates_each_region_and_shares_the_raw_cache(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(MULTI.format(root=tmp_path))
    s = load_settings(cfg)
    assert s.region_names == ["scs", "east"] and s.region.name == "scs"
    assert regions_lib.select(s, None) == regions_lib.select(s, "all") == ["scs", "east"]
    assert regions_lib.select(s, "east") == ["east"]
    east, scs = s.for_region("east"), s.for_region("scs")
    assert east.storage_root == str(tmp_path / "data" / "east") and scs.storage_root == str(tmp_path / "data" / "scs")
    assert east.model_store == str(tmp_path / "models" / "east")
    assert east.raw_cache_root == scs.raw_cache_root == str(tmp_path / "data")
    # a region names its own model (and alias); what trains for it follows, as model_id follows training.model
    assert (east.model_id, east.model_version, east.training.model) == ("mean-bias", "production", "mean-bias")
    assert (scs.model_id, scs.model_version) == (s.model_id, s.model_version)
    assert east.regions == [east.region] and east.for_region("east") == east  # selecting again changes nothing
    assert settings_from_dict(east.model_dump(mode="json")) == east  # what workers and tasks rebuild
    assert settings_from_dict(s.model_dump(mode="json")) == s
    ca, ce = pipeline.make_context(scs), pipeline.make_context(east)
    assert ca.store.root != ce.store.root and ca.grid.grid_id != ce.grid.grid_id
    assert ca.oisst.store.root == ce.oisst.store.root == ce.hycom.store.root == str(tmp_path / "data")
    with pytest.raises(ConfigError, match="2 regions are configured .*--region"):
        s.for_region()
    with pytest.raises(ConfigError, match="'west'.*scs, east"):
        regions_lib.select(s, "west")


@pytest.mark.parametrize("body, expected", [
    ('[[regions]]\nname = "a"\n[[regions]]\nname = "b"\n[[regions]]\nname = "a"\nlat_min = 1.0\nlat_max = 2.0\n',
     r"\[\[regions\]\] names must be unique: 'a' configured more than once"),
    ('[[regions]]\nname = "a"\n[[regions]]\nname = "b"\nlat_mni = 3.0\n', r"(?s)regions\.1\.lat_mni.*Extra inputs"),
    ('[region]\nname = "c"\n[[regions]]\nname = "a"\n[[regions]]\nname = "b"\n', r"\[region\] 'c' is not one of"),
    ('[[regions]]\nname = "a"\n[[regions]]\nname = "raw"\n', r"'raw' are reserved"),
    ('[[regions]]\nname = "a/b"\n', r"region name must be alphanumeric"),
])
def test_region_list_mistakes_are_one_config_error(tmp_path: Path, body: str, expected: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(body)
    with pytest.raises(ConfigError, match=expected) as info:
        load_settings(cfg)
    assert str(cfg) in str(info.value)


def test_cli_names_a_duplicate_region_or_an_unknown_one_in_one_line(tmp_path: Path, capsys) -> None:
    from flows.cli import main

    cfg = tmp_path / "dup.toml"
    cfg.write_text('[[regions]]\nname = "a"\n[[regions]]\nname = "a"\n')
    assert main(["fetch", "--date", "2021-03-01", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "configuration error" in err[0] and "'a' configured more than once" in err[0]
    good = tmp_path / "multi.toml"
    good.write_text(MULTI.format(root=tmp_path))
    assert main(["run", "--date", "2021-03-01", "--region", "west", "--config", str(good), "--json"]) == 2
    out = capsys.readouterr()
    assert "'west'" in out.err and out.err.count("\n") == 1
    assert '"exit_code": 2' in out.out
    assert main(["fetch", "--date", "2021-03-01", "--config", str(good)]) == 2  # one-region command: which one?
    assert "name one with --region" in capsys.readouterr().err


def test_fan_out_policy_isolates_failures_and_names_them() -> None:
    s = settings_from_dict({"regions": [{"name": "a"}, {"name": "b", "lat_min": 13.0}, {"name": "c"}]})

    def work(rs):
        if rs.region.name == "b":
            raise ConfigError("no model for region b")
        return rs.storage_root

    outcomes = regions_lib.run_each(regions_lib.split(s, "all"), work)
    assert [o.ok for o in outcomes] == [True, False, True]  # c still ran after b failed
    summary = regions_lib.summary(outcomes)
    assert set(summary["regions"]) == {"a", "c"}
    assert summary["failed_regions"] == [{"region": "b", "error": "ConfigError", "message": "no model for region b"}]
    with pytest.raises(regions_lib.RegionsFailed, match="1 of 3 region.*region b: ConfigError: no model.*completed: a, c"):
        regions_lib.raise_if_failed(outcomes, "test")
    assert regions_lib.exit_code({"a": 0, "b": 2, "c": 0}) == 1
    assert regions_lib.exit_code({"a": 2, "b": 3}) == 3 and regions_lib.exit_code({"a": 0}) == 0
