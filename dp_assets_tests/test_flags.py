"""Ad-hoc restart flags: --clean-up purges only the range; --e2e-test reads the test folder and is
refused before any I/O where real data lives."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from dp_assets.cli import main
from dp_assets.config.loader import PACKAGED, ConfigError, load_config_from
from dp_assets.definitions import build_definitions
from dp_assets.demo import write_flight_deliveries
from dp_assets.lake import Lake
from dp_assets.stages.tables import TABLES_OP
from dp_assets_tests.helpers import demo_lake, materialize_keys

DAYS = ["2013-01-01", "2013-01-02", "2013-01-03", "2013-01-04"]


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def dump(loaded, day: str, **flags: bool) -> dg.ExecuteInProcessResult:
    defs = build_definitions(loaded)
    return materialize_keys(
        defs,
        ["raw", "flights"],
        resources=defs.resources,
        instance=dg.DagsterInstance.ephemeral(),
        partition_key=day,
        raise_on_error=False,
        run_config={"ops": {TABLES_OP: {"config": flags}}},
    )


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return failure.step_failure_data.error.message


@pytest.mark.parametrize("env", ["integration", "preprod", "prod"])
def test_e2e_test_in_protected_env_exits_having_read_and_written_nothing(
    env: str, isolated_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DP_ENV", env)
    # Reading this config would fail loudly (no such bucket, no credentials): refusal must come first.
    monkeypatch.setenv("CONFIG_S3_URI", "s3://no-such-bucket-anywhere/config.toml")
    code = main(["run", "--start", "2013-01-01", "--end", "2013-01-01", "--e2e-test"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--e2e-test is refused in {env}" in err and "nothing was read or written" in err
    assert files_under(isolated_home) == []


def test_e2e_test_refused_by_config_env(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (Path(__file__).parents[1] / "dp_assets" / "config" / "config.toml").read_text()
    cfg = tmp_path / "preprod.toml"
    cfg.write_text(text.replace('env = "local"', 'env = "preprod"'))
    assert (
        main(["run", "--start", "2013-01-01", "--end", "2013-01-01", "--e2e-test", "--config-s3", str(cfg)])
        == 2
    )
    assert "refused in preprod" in capsys.readouterr().err


def test_dump_asset_refuses_e2e_in_prod_when_launched_from_the_ui(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded = load_config_from(PACKAGED, home=isolated_home)
    monkeypatch.setenv("DP_ENV", "prod")
    result = dump(loaded, "2013-01-01", e2e_test=True)
    assert "--e2e-test is refused in prod" in failure_message(result)
    assert files_under(isolated_home) == []


def test_e2e_test_reads_the_e2e_folder(isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DP_ENV", "dev")
    loaded = load_config_from(PACKAGED, home=isolated_home)
    assert loaded.env == "dev"
    day = "2013-01-02"
    write_flight_deliveries(Lake(loaded, e2e_test=True), dt.date(2013, 1, 2), dt.date(2013, 1, 2))
    assert not dump(loaded, day).success  # the real landing zone has nothing for that day
    result = dump(loaded, day, e2e_test=True)
    assert result.success
    manifest = Lake(loaded).store.uri(Lake(loaded).manifest_path("flights", day))
    assert str(isolated_home / "e2e_landing" / "flights" / day) in Path(manifest).read_text()


def test_clean_up_purges_the_range_and_only_the_range(isolated_home: Path) -> None:
    loaded, _ = demo_lake(isolated_home, DAYS[0], DAYS[-1])
    lake = Lake(loaded)
    for day in DAYS:  # what a previous run left in every zone, and a stray file in raw and staged
        assert dump(loaded, day).success
        for prefix in ("flights", "_quarantine/flights"):
            with lake.store.open_write(f"{prefix}/flight_date={day}/part-0.parquet") as f:
                f.write(b"old")
        for prefix in (lake.raw_prefix("flights", day), lake.staged_prefix("flights", day)):
            with lake.store.open_write(f"{prefix}/stray.bin") as f:
                f.write(b"stray")
    lake_root = Path(loaded.output_path)
    before = files_under(lake_root)
    result = dump(loaded, "2013-01-02", clean_up=True)
    assert result.success
    removed = sorted(set(before) - set(files_under(lake_root)))
    # raw and staged of that day only were purged (and dumped again); the published partitions are
    # the load's to replace, once its audit passes
    assert removed == [
        "_raw/flights/flight_date=2013-01-02/stray.bin",
        "_staged/flights/flight_date=2013-01-02/stray.bin",
    ]


def test_unknown_dp_env_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DP_ENV", "staging")
    with pytest.raises(ConfigError, match="DP_ENV='staging' is not an environment"):
        _ = load_config_from(PACKAGED).env
