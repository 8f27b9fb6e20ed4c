"""`radpulse --config FILE up`: every child reads FILE, and the streams get [streams] web_port."""

from __future__ import annotations

from pathlib import Path

from cli.main import build_parser
from cli.supervisor import child_commands
from schemas.config import load_settings


def test_children_read_the_config_file_and_the_web_port(tmp_path: Path) -> None:
    config = tmp_path / "site.toml"
    config.write_text('[streams]\nweb_port = 7077\n[site]\ntimezone = "Asia/Shanghai"\n', encoding="utf-8")
    settings = load_settings(str(config), env={})
    commands = dict(child_commands(settings, str(config)))
    assert set(commands) == {"sink", "streams", "edge"}
    parser = build_parser()
    for name, argv in commands.items():
        args = parser.parse_args(argv[3:])  # after `python -m cli.main`
        assert args.config == str(config), name
        assert load_settings(args.config, env={}).site.timezone == "Asia/Shanghai"
    assert parser.parse_args(commands["streams"][3:]).web_port == 7077


def test_without_a_config_file_children_take_the_defaults() -> None:
    settings = load_settings(None, env={})
    streams = dict(child_commands(settings, None))["streams"]
    assert "--config" not in streams and streams[-2:] == ["--web-port", "6066"]
