from pathlib import Path

import pytest

from schemas.config import ConfigError, load_settings


def test_defaults() -> None:
    s = load_settings(None, env={})
    assert s.edge.port == 11112 and s.edge.ae_title == "RADPULSE" and s.clickhouse.url.startswith("chdb://")


def test_toml_then_env_override(tmp_path: Path) -> None:
    f = tmp_path / "radpulse.toml"
    f.write_text('[edge]\nport = 11113\nallowed_calling_aes = ["CT1", "MR1"]\n[site]\ntimezone = "Asia/Shanghai"\n')
    s = load_settings(f, env={"RADPULSE_EDGE__PORT": "104"})
    assert s.edge.port == 104 and s.edge.allowed_calling_aes == ["CT1", "MR1"] and s.site.timezone == "Asia/Shanghai"


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RADPULSE_EDGE__PORT": "abc"}, "RADPULSE_EDGE__PORT"),
        ({"RADPULSE_EDGE__PORT": "70000"}, "RADPULSE_EDGE__PORT"),
        ({"RADPULSE_SITE__TIMEZONE": "Mars/Olympus"}, "IANA"),
        ({"RADPULSE_EDGE__AE_TITLE": "THIS_IS_WAY_TOO_LONG"}, "RADPULSE_EDGE__AE_TITLE"),
        ({"RADPULSE_CLICKHOUSE__URL": "mysql://x"}, "chdb:///"),
        ({"RADPULSE_NOPE__X": "1"}, "unknown section"),
        ({"RADPULSE_EDGE__TEST_PATIENT_PATTERNS": "(unclosed"}, "not a valid regular expression"),
    ],
)
def test_bad_values_name_the_setting_and_the_fix(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("(", r"\(")):
        load_settings(None, env=env)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    f = tmp_path / "radpulse.toml"
    f.write_text("[edge]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"\[edge\] prot: unknown setting"):
        load_settings(f, env={})


def test_secrets_are_masked() -> None:
    s = load_settings(
        None,
        env={"RADPULSE_KAFKA__SASL_PASSWORD": "hunter2", "RADPULSE_CLICKHOUSE__URL": "http://u:pw123@h:8123/db"},
    )
    text = "\n".join(s.masked_lines())
    assert "hunter2" not in text and "pw123" not in text and "***" in text
