from __future__ import annotations

import os

import pytest

from bias_correction.errors import ConfigError
from bias_correction.storage import Store, check_key


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a\\b", "s3://b/k", "a\x00b"])
def test_hostile_keys_are_rejected(key) -> None:
    with pytest.raises(ConfigError):
        check_key(key)


def test_staged_write_is_invisible_until_complete(tmp_path) -> None:
    store = Store(tmp_path)
    with pytest.raises(RuntimeError):
        with store.staged("products/a.nc") as tmp:
            tmp.write_bytes(b"partial")
            assert not store.exists("products/a.nc")
            raise RuntimeError("crash while writing")
    assert not store.exists("products/a.nc")
    assert os.listdir(tmp_path / "products") == []  # no temporary file left behind
    store.write_bytes("products/a.nc", b"whole")
    assert store.read_bytes("products/a.nc") == b"whole"
    assert store.list("products") == ["products/a.nc"]


def test_failed_rewrite_keeps_the_published_file(tmp_path) -> None:
    store = Store(tmp_path)
    store.write_bytes("p/x.nc", b"v1")
    with pytest.raises(ValueError):
        with store.staged("p/x.nc") as tmp:
            tmp.write_bytes(b"v2-partial")
            raise ValueError
    assert store.read_bytes("p/x.nc") == b"v1"


def test_unsupported_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="s3://"):
        Store("gs://bucket/x")
