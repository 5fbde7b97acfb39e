"""Settings: precedence and clear errors that name the setting."""

import pytest

from thotto.config import ProcessRole, load_settings
from thotto.engine.errors import ConfigError


def test_defaults_put_sqlite_in_the_data_dir():
    settings = load_settings(environ={})
    assert settings.role is ProcessRole.ALL
    assert settings.resolved_database_url() == "thotto-data/thotto.db"


def test_environment_overrides_toml_and_overrides_win(tmp_path):
    config = tmp_path / "thotto.toml"
    config.write_text('role = "api"\nshutdown_grace_seconds = 5\ndata_dir = "from-toml"\n')
    environ = {"THOTTO_CONFIG": str(config), "THOTTO_ROLE": "worker"}
    settings = load_settings(environ=environ, data_dir="from-flag")
    assert settings.role is ProcessRole.WORKER
    assert settings.shutdown_grace_seconds == 5.0
    assert settings.data_dir == "from-flag"


def test_bad_enum_value_names_variable_and_allowed_values():
    with pytest.raises(ConfigError, match=r"THOTTO_ROLE.*allowed: all, api, worker"):
        load_settings(environ={"THOTTO_ROLE": "boss"})


def test_out_of_range_number_is_refused():
    with pytest.raises(ConfigError, match="THOTTO_SHUTDOWN_GRACE_SECONDS"):
        load_settings(environ={"THOTTO_SHUTDOWN_GRACE_SECONDS": "-1"})


@pytest.mark.parametrize(("variable", "value"), [
    ("THOTTO_LOG_LEVEL", "INFO\n"),
    ("THOTTO_REDDIT_USER_AGENT_PLATFORM", "python\n"),
    ("THOTTO_REDDIT_USER_AGENT_APP_ID", "thotto\n"),
    ("THOTTO_REDIS_NAMESPACE", "thotto\n"),
])
def test_a_patterned_value_with_a_trailing_newline_is_refused(variable, value):
    """Patterns match the whole value: Python's ``$`` alone would accept a final newline."""
    with pytest.raises(ConfigError, match=variable):
        load_settings(environ={variable: value})


def test_unknown_toml_key_lists_known_settings(tmp_path):
    config = tmp_path / "thotto.toml"
    config.write_text("bogus = 1\n")
    with pytest.raises(ConfigError, match="Unknown setting 'bogus'; known settings: data_dir"):
        load_settings(config, environ={})


def test_missing_and_malformed_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", environ={})
    broken = tmp_path / "broken.toml"
    broken.write_text("role = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken, environ={})
