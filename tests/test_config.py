"""Configuration: defaults, user files, environment overrides and every kind of invalid input."""

from __future__ import annotations

import dataclasses
import logging
import re
import sys
from pathlib import Path

import pytest

from pipeline.config import (
    GTRENDS_PROPERTIES,
    NUMBER_BOUNDS,
    SECTIONS,
    environment_names,
    load_settings,
)
from pipeline.errors import ConfigError
from tests.conftest import run_cli


def test_packaged_defaults_hold_the_contract_values() -> None:
    settings = load_settings()
    assert settings.database.url == "sqlite:///data/trends.db"
    assert settings.gtrends.base_url == "https://trends.google.com/trends"
    assert settings.http.request_delay > 0
    assert settings.pwc.api_url.startswith("https://")
    assert settings.pwc.links_url.endswith(".parquet")
    assert len(settings.pwc.papers_locations) == 4
    assert list(settings.frameworks)[:7] == [
        "pytorch",
        "tensorflow",
        "jax",
        "mxnet",
        "paddlepaddle",
        "mindspore",
        "caffe2",
    ]
    assert settings.framework_for_pwc_code()["none"] == "other"
    assert settings.framework_for_pwc_code()["tf"] == "tensorflow"
    assert {f.key for f in settings.gtrends_frameworks()} == {
        "pytorch",
        "tensorflow",
        "jax",
        "mxnet",
        "paddlepaddle",
        "mindspore",
        "caffe2",
    }


def test_user_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[gtrends]\ngeo = "US"\n[http]\nrequest_delay = 1\n')
    settings = load_settings(path)
    assert settings.gtrends.geo == "US"
    assert settings.gtrends.variant == "US"
    assert settings.http.request_delay == 1.0  # an integer is accepted for a number
    assert settings.gtrends.base_url == "https://trends.google.com/trends"
    assert "pytorch" in settings.frameworks


def test_frameworks_table_in_user_file_replaces_the_default_list(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[frameworks.pytorch]\nname = "PyTorch"\ngtrends = "pytorch"\npwc = "pytorch"\n'
    )
    assert list(load_settings(path).frameworks) == ["pytorch"]


def test_environment_overrides_file_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "sqlite:///from-file.db"\n')
    monkeypatch.setenv("TRENDS_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("TRENDS_HTTP_REQUEST_DELAY", "0.25")
    monkeypatch.setenv("TRENDS_GTRENDS_ENABLED", "false")
    monkeypatch.setenv("TRENDS_PWC_API_URL", "http://127.0.0.1:9/api/v1")
    settings = load_settings(path)
    assert settings.database.url == "sqlite:///from-env.db"
    assert settings.http.request_delay == 0.25
    assert settings.gtrends.enabled is False
    assert settings.pwc.api_url == "http://127.0.0.1:9/api/v1"


def test_trends_config_variable_selects_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[gtrends]\ngeo = "DE"\n')
    monkeypatch.setenv("TRENDS_CONFIG", str(path))
    assert load_settings().gtrends.geo == "DE"


@pytest.mark.parametrize(
    ("content", "key", "problem"),
    [
        ("[gtrends\n", "file", "not valid TOML"),
        ("[gtrends]\nspeed = 3\n", "[gtrends] speed", "unknown key"),
        ("[nosuch]\nx = 1\n", "[nosuch]", "unknown section"),
        ('[http]\nrequest_delay = "fast"\n', "[http] request_delay", "expected a number"),
        ("[gtrends]\nenabled = 1\n", "[gtrends] enabled", "expected true or false"),
        ("[gtrends]\ncategory = true\n", "[gtrends] category", "expected an integer"),
        ('[gtrends]\nschedule = "every day"\n', "[gtrends] schedule", "not a cron expression"),
        ('[gtrends]\nschedule = "0 0 30 2 *"\n', "[gtrends] schedule", "never fires"),
        ('[pwc]\napi_schedule = "0 6 31 4,6,9,11 *"\n', "[pwc] api_schedule", "never fires"),
        ('[gtrends]\nhistory_start = "2016-13-01"\n', "[gtrends] history_start", "expected a date"),
        (
            "[gtrends]\nhistory_start = 2016-01-01\n",
            "[gtrends] history_start",
            "expected a string, got the TOML date 2016-01-01 (put it in quotes)",
        ),
        (
            "[gtrends]\nenabled = [true]\n",
            "[gtrends] enabled",
            "expected true or false, got a list",
        ),
        ('[gtrends]\nhistory_start = "1990-01-01"\n', "[gtrends] history_start", "1990-01-01 is"),
        ('[gtrends]\nhistory_start = "2999-01-01"\n', "[gtrends] history_start", "outside Google"),
        ('[database]\nurl = "sqlite:///:memory:"\n', "[database] url", "in-memory database"),
        ('[database]\nurl = "sqlite://"\n', "[database] url", "in-memory database"),
        ("[http]\nmax_attempts = 0\n", "[http] max_attempts", "must be 1 or more, got 0"),
        ("[http]\nrequest_budget = 0\n", "[http] request_budget", "must be 1 or more"),
        ("[http]\nrequest_delay = -1\n", "[http] request_delay", "must be 0 or more, got -1.0"),
        ("[http]\ntimeout = 0\n", "[http] timeout", "must be more than 0"),
        ("[http]\ntimeout = nan\n", "[http] timeout", "must be a finite number, got nan"),
        ("[http]\ntimeout = inf\n", "[http] timeout", "must be a finite number, got inf"),
        ("[http]\nbackoff_base = -1\n", "[http] backoff_base", "must be 0 or more"),
        ("[http]\nbackoff_max = -0.5\n", "[http] backoff_max", "must be 0 or more"),
        ("[http]\nbackoff_max = 1e9\n", "[http] backoff_max", "must be at most 86400"),
        ("[gtrends]\ncategory = -1\n", "[gtrends] category", "must be 0 or more"),
        ("[gtrends]\nthreshold = -1\n", "[gtrends] threshold", "must be 0 or more"),
        ("[gtrends]\nthreshold = 101\n", "[gtrends] threshold", "must be at most 100"),
        ("[gtrends]\ndata_lag_days = -1\n", "[gtrends] data_lag_days", "must be 0 or more"),
        ("[gtrends]\ndata_lag_days = 61\n", "[gtrends] data_lag_days", "must be at most 60"),
        ('[gtrends]\nproperty = "radio"\n', "[gtrends] property", "unknown 'radio' (one of"),
        (
            "[scheduler]\nmisfire_grace_hours = -1\n",
            "[scheduler] misfire_grace_hours",
            "must be 0 or more",
        ),
        ('[scheduler]\ntimezone = "Mars/Olympus"\n', "[scheduler] timezone", "unknown time zone"),
        ('[database]\nurl = "data/trends.db"\n', "[database] url", "not a database URL"),
        ('[database]\nurl = "foo://bar"\n', "[database] url", "unsupported database 'foo'"),
        (
            '[database]\nurl = "mysql://u:p@127.0.0.1:9/db"\n',
            "[database] url",
            "unsupported database 'mysql' in 'mysql://u:***@127.0.0.1:9/db'",
        ),
        (
            '[database]\nurl = "postgresql+nosuch://h/db"\n',
            "[database] url",
            "unknown driver 'postgresql+nosuch'",
        ),
        ('[database]\nurl = "sqlite://host/x.db"\n', "[database] url", "Invalid SQLite URL"),
        ('[frameworks.keras]\npwc = "keras"\n', "[frameworks.keras] pwc", "unknown code"),
        ("[frameworks.keras]\nstars = 3\n", "[frameworks.keras] stars", "unknown key"),
        ('[frameworks.Keras]\nname = "K"\n', "[frameworks.Keras]", "lower-case"),
        (
            '[frameworks.a]\npwc = "tf"\n[frameworks.b]\npwc = "tf"\n',
            "[frameworks.b] pwc",
            "already used",
        ),
    ],
)
def test_invalid_files_name_file_key_and_problem(
    tmp_path: Path, content: str, key: str, problem: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.origin == str(path)
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_invalid_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRENDS_HTTP_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match=r"^TRENDS_HTTP_TIMEOUT: \[http\] timeout: expected"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "key", "problem"),
    [
        ("TRENDS_DATABASE_URL", "garbage", "[database] url", "not a database URL: 'garbage'"),
        ("TRENDS_DATABASE_URL", "foo://bar", "[database] url", "unsupported database 'foo'"),
        ("TRENDS_GTRENDS_SCHEDULE", "every day", "[gtrends] schedule", "not a cron expression"),
        ("TRENDS_PWC_API_START", "2025-13-01", "[pwc] api_start", "expected a date"),
        ("TRENDS_SCHEDULER_TIMEZONE", "Mars/Olympus", "[scheduler] timezone", "unknown time"),
        ("TRENDS_HTTP_REQUEST_DELAY", "-1", "[http] request_delay", "must be 0 or more"),
        ("TRENDS_HTTP_TIMEOUT", "nan", "[http] timeout", "must be a finite number"),
        ("TRENDS_GTRENDS_PROPERTY", "radio", "[gtrends] property", "unknown 'radio'"),
        ("TRENDS_GTRENDS_BASE_URL", "notaurl", "[gtrends] base_url", "expected an http://"),
        ("TRENDS_PWC_API_URL", "ftp://x/api", "[pwc] api_url", "expected an http://"),
        ("TRENDS_DATABASE_URL", "sqlite:////tmp", "[database] url", "/tmp is a directory"),
        ("TRENDS_DATABASE_LOCK_PATH", "/tmp", "[database] lock_path", "lock file /tmp is a dir"),
        ("TRENDS_PWC_CACHE_DIR", "/etc/passwd", "[pwc] cache_dir", "is a file, not a directory"),
        ("TRENDS_GTRENDS_HISTORY_START", "2003-12-31", "[gtrends] history_start", "outside"),
    ],
)
def test_meaningless_environment_value_names_the_variable_not_the_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    key: str,
    problem: str,
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[gtrends]\ngeo = "US"\n')
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert (caught.value.origin, caught.value.key) == (variable, key)
    assert problem in caught.value.problem


def test_range_limits_themselves_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        "[http]\nrequest_delay = 0\nbackoff_base = 0\nbackoff_max = 0\nmax_attempts = 1\n"
        "request_budget = 1\ntimeout = 0.001\n"
        '[gtrends]\nproperty = "youtube"\ncategory = 0\nthreshold = 100\ndata_lag_days = 60\n'
        "[scheduler]\nmisfire_grace_hours = 0\n"
    )
    settings = load_settings(path)
    assert settings.http.request_delay == 0.0
    assert settings.gtrends.data_lag_days == 60


def test_every_numeric_key_has_a_range() -> None:
    numeric = {
        (section, f.name)
        for section, schema in SECTIONS.items()
        for f in dataclasses.fields(schema)
        if f.type in ("int", "float")
    }
    assert numeric == set(NUMBER_BOUNDS)


def test_gtrends_properties_are_the_ones_the_client_accepts() -> None:
    from pipeline.sources.gtrends.client import PROPERTIES

    assert GTRENDS_PROPERTIES == PROPERTIES


def test_database_driver_that_is_not_installed_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # `import psycopg2` now fails
    monkeypatch.setenv("TRENDS_DATABASE_URL", "postgresql+psycopg2://user:s3cret@127.0.0.1:9/db")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert (caught.value.origin, caught.value.key) == ("TRENDS_DATABASE_URL", "[database] url")
    assert "driver of 'postgresql+psycopg2' is not installed" in caught.value.problem
    assert "s3cret" not in str(caught.value)


def test_unparseable_database_url_does_not_show_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRENDS_DATABASE_URL", "postgres//user:s3cret@host/db")
    with pytest.raises(ConfigError, match="not a database URL") as caught:
        load_settings()
    assert "s3cret" not in str(caught.value)


def test_file_that_is_not_utf8_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert (caught.value.origin, caught.value.key) == (str(path), "file")
    assert caught.value.problem == "not UTF-8 text (byte 0xff at offset 0)"


def test_missing_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path / "nope.toml")


def test_cli_reports_bad_config_in_one_line_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    db = tmp_path / "never.db"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n[gtrends]\nthreshold = "x"\n')
    for command in (["db", "upgrade"], ["runs"], ["status"], ["sql", "select 1"]):
        result = run_cli(path, *command)
        assert result.exit_code == 2, command
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith(f"Error: {path}: [gtrends] threshold: expected an integer")
        assert "Traceback" not in result.output
    assert not db.exists()


@pytest.mark.parametrize(
    ("variable", "value", "first_line"),
    [
        (
            "TRENDS_DATABASE_URL",
            "foo://bar",
            "Error: TRENDS_DATABASE_URL: [database] url: unsupported database 'foo'",
        ),
        (
            "TRENDS_GTRENDS_PROPERTY",
            "radio",
            "Error: TRENDS_GTRENDS_PROPERTY: [gtrends] property: unknown 'radio'",
        ),
        ("TRENDS_HTTP_TIMEOUT", "inf", "Error: TRENDS_HTTP_TIMEOUT: [http] timeout: must be a"),
        (
            "TRENDS_TODAY",
            "2026/11/27",
            "Error: TRENDS_TODAY: the day to pretend: expected YYYY-MM-DD, got '2026/11/27'",
        ),
    ],
)
def test_cli_reports_meaningless_environment_value_in_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, first_line: str
) -> None:
    path = tmp_path / "c.toml"
    db = tmp_path / "never.db"
    path.write_text(f'[database]\nurl = "sqlite:///{db}"\n')
    monkeypatch.setenv(variable, value)
    for command in (["status"], ["backfill", "gtrends", "--start", "2024-01-01"]):
        result = run_cli(path, *command)
        assert result.exit_code == 2, command
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith(first_line)
    assert not db.exists()


def test_cli_reports_a_file_that_is_not_utf8_in_one_line_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00binary")
    result = run_cli(path, "aggregate")
    assert result.exit_code == 2
    assert result.stderr == f"Error: {path}: file: not UTF-8 text (byte 0xff at offset 0)\n"


def test_an_empty_url_of_a_disabled_source_is_fine_but_a_bad_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[pwc]\napi_enabled = false\napi_url = ""\n')
    assert load_settings(path).pwc.api_url == ""
    path.write_text('[gtrends]\nenabled = false\nbase_url = "trends.google.com/trends"\n')
    with pytest.raises(ConfigError, match="expected an http:// or https:// URL"):
        load_settings(path)


def test_an_unknown_trends_variable_is_named_with_a_guess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[gtrends]\ngeo = "US"\n')
    monkeypatch.setenv("TRENDS_DATABSE_URL", "sqlite:///elsewhere.db")
    monkeypatch.setenv("TRENDS_TEST_ANYTHING", "1")  # the test suite's own
    with caplog.at_level(logging.WARNING, "pipeline.config"):
        load_settings(path)
    assert [r.getMessage() for r in caplog.records] == [
        "TRENDS_DATABSE_URL is not a setting and is ignored (did you mean TRENDS_DATABASE_URL?)"
    ]


def test_every_documented_environment_variable_is_read() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"`(TRENDS_[A-Z_]+[A-Z])`", readme)) - {"TRENDS_TEST_POSTGRES_URL"}
    assert documented and documented <= environment_names()
