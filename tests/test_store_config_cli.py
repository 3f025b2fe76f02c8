"""`zoostore init` validates its parameters and names what differs; `zoostore config` changes
the one parameter that may change (the gc grace period)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoostore.cli import main
from zoostore.repository import open_store


def test_init_validates_grace_and_pack_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--grace", "0s"], ["--grace", "1m"], ["--grace", "soon"], ["--pack-size", "0"],
                 ["--pack-size=-5MiB"], ["--pack-size", "100TiB"]):
        assert main(["init", str(tmp_path / "s"), *args]) == 2, args
        assert "invalid" in capsys.readouterr().err
    assert not (tmp_path / "s" / "zoostore.toml").exists()


def test_init_over_a_store_names_exactly_what_differs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "s")
    assert main(["init", store]) == 0
    before = (tmp_path / "s" / "zoostore.toml").read_bytes()
    assert main(["init", store, "--grace", "1h"]) == 7
    err = capsys.readouterr().err
    assert "gc grace: 1d in the store, 1h asked" in err and "zoostore config" in err and "chunking" not in err
    assert main(["init", store, "--pack-size", "8MiB", "--grace", "2h"]) == 7
    err = capsys.readouterr().err
    assert "pack target size: 32.0 MiB in the store, 8.0 MiB asked" in err and "gc grace" in err
    assert "never change" in err
    assert (tmp_path / "s" / "zoostore.toml").read_bytes() == before  # never replaced


def test_config_changes_the_grace_period(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "s")
    assert main(["init", store]) == 0
    assert main(["config", store, "--grace", "48h"]) == 0
    assert open_store(store).config.grace_seconds == 48 * 3600
    assert main(["init", store, "--grace", "48h"]) == 0  # now the same parameters
    capsys.readouterr()
    assert main(["config", store, "--json"]) == 0
    assert '"grace": "2d"' in capsys.readouterr().out
    assert main(["config", store, "--grace", "5s"]) == 2
    assert open_store(store).config.grace_seconds == 48 * 3600
