from __future__ import annotations

import pytest

from bias_correction.config import load_settings, settings_from_dict
from bias_correction.errors import ConfigError


def test_defaults_are_the_paper_box() -> None:
    s = load_settings()
    assert (s.region.lat_min, s.region.lat_max, s.region.lon_min, s.region.lon_max) == (12, 16, 110, 114)
    assert s.grid_step == 0.08 and s.model_id == "convgru-sa" and s.providers == "auto"


def test_toml_file_then_env_then_overrides(tmp_path, monkeypatch) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('storage_root = "/data/x"\n[region]\nlat_min = 10.0\n[upstream]\noisst_https = "http://mirror/oisst/"\n')
    s = load_settings(cfg)
    assert s.storage_root == "/data/x" and s.region.lat_min == 10.0
    assert s.upstream.oisst_https == "http://mirror/oisst"  # trailing slash normalised
    monkeypatch.setenv("SSTBC_REGION__LAT_MIN", "11")
    assert load_settings(cfg).region.lat_min == 11.0
    assert load_settings(cfg, region={"lat_min": 9.0}).region.lat_min == 9.0


def test_unknown_key_in_file_is_rejected(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("grid_stepp = 0.1\n")
    with pytest.raises(ConfigError, match="grid_stepp"):
        load_settings(cfg)


def test_unknown_nested_key_in_file_is_rejected(tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[region]\nlatmin = 1\n")
    with pytest.raises(ConfigError, match="latmin"):
        load_settings(cfg)


def test_unknown_env_var_is_rejected(monkeypatch) -> None:
    monkeypatch.setenv("SSTBC_STORAGE_ROOTT", "/x")
    with pytest.raises(ConfigError, match="SSTBC_STORAGE_ROOTT"):
        load_settings()


@pytest.mark.parametrize(
    "bad",
    [{"region": {"lat_min": 20, "lat_max": 10}}, {"providers": "gpu"}, {"grid_step": -1},
     {"upstream": {"hycom_ncss": "ftp://x"}}, {"model_id": "../evil"}],
)
def test_invalid_values_are_rejected(bad) -> None:
    with pytest.raises(ConfigError):
        load_settings(**bad)


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_round_trip_through_plain_data_is_exact(monkeypatch) -> None:
    s = load_settings(storage_root="/a")
    monkeypatch.setenv("SSTBC_STORAGE_ROOT", "/b")  # must not leak into an already-resolved config
    assert settings_from_dict(s.model_dump(mode="json")) == s
    assert s.fingerprint() == settings_from_dict(s.model_dump(mode="json")).fingerprint()


def test_the_example_config_in_deploy_loads() -> None:
    from pathlib import Path

    s = load_settings(Path(__file__).resolve().parents[2] / "deploy" / "sstbc.example.toml")
    assert s.upstream.oisst_access == ("https", "s3") and s.region.name == "scs"


def test_plain_data_validation_never_touches_the_environment(monkeypatch) -> None:
    """Tasks validate settings passed as plain data in threads while other threads load settings
    from the environment: neither may see the other's view (the old validator emptied os.environ)."""
    import os
    import threading

    from bias_correction.config import settings_from_dict

    monkeypatch.setenv("SSTBC_LEAD_DAYS", "3")
    data = load_settings().model_dump()
    data["lead_days"] = 5
    seen_env, seen_plain, errors = [], [], []

    def from_env() -> None:
        try:
            seen_env.extend(load_settings().lead_days for _ in range(150))
        except Exception as exc:  # noqa: BLE001 - reported through the assertion below
            errors.append(exc)

    def from_plain() -> None:
        seen_plain.extend(settings_from_dict(data).lead_days for _ in range(150))

    threads = [threading.Thread(target=f) for f in (from_env, from_plain, from_env, from_plain)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert set(seen_env) == {3} and len(seen_env) == 300
    assert set(seen_plain) == {5} and len(seen_plain) == 300
    assert os.environ["SSTBC_LEAD_DAYS"] == "3"


def test_auxiliary_inputs_and_residual_bases_come_from_the_input_registry() -> None:
    from bias_correction.inputs import AUX_INPUTS, NO_RESIDUAL, RESIDUAL_BASES

    for name in AUX_INPUTS:
        assert load_settings(training={"aux_inputs": [name]}).training.resolved_aux_inputs == (name,)
    with pytest.raises(ConfigError, match="unknown auxiliary input"):
        load_settings(training={"aux_inputs": ["sea_ice"]})
    with pytest.raises(ConfigError, match="residual_base"):
        load_settings(training={"residual_base": "sea_ice"})
    anchors = [b for b in RESIDUAL_BASES if b not in ("hycom", NO_RESIDUAL)]
    assert anchors and all(AUX_INPUTS[b].anchor for b in anchors)
    # The paper's direct framing is a residual base of its own, not an input.
    assert NO_RESIDUAL in RESIDUAL_BASES and NO_RESIDUAL not in AUX_INPUTS
    assert load_settings(training={"residual_base": NO_RESIDUAL}).training.residual_base == NO_RESIDUAL
