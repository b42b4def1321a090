"""Configuration: defaults, user files, environment overrides and every kind of invalid input."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_settings
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
        ('[gtrends]\nhistory_start = "2016-13-01"\n', "[gtrends] history_start", "expected a date"),
        ("[http]\nmax_attempts = 0\n", "[http] max_attempts", "must be positive"),
        ('[database]\nurl = "data/trends.db"\n', "[database] url", "not a database URL"),
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
