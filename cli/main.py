"""`radpulse`: the one command line. Each package contributes its subcommands through its own ``cli.py``
(``register(subparsers)``), imported here so that ``radpulse --help`` lists them all."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from schemas.config import ConfigError

# Packages whose cli.py adds subcommands, in the order the help lists them.
_CONTRIBUTORS = ("cli.up_cli", "cli.dose_cli", "cli.broker_cli", "edge_ingest.cli", "streams.cli", "sinks.cli",
                "dashboards.cli")


def setup_logging(level: str = "INFO") -> None:
    """Rich on a terminal; one plain line per record otherwise (logs that go to files and journald)."""
    if sys.stderr.isatty():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(show_path=False, markup=False, log_time_format="%H:%M:%S")
        fmt = "%(name)s: %(message)s"
    else:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), handlers=[handler], format=fmt, force=True)
    for noisy in ("faust", "mode", "aiokafka", "kafka", "pynetdicom"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="radpulse",
        description="Live operations and radiation-dose analytics for a hospital imaging department.",
    )
    parser.add_argument("--config", help="radpulse.toml to read (default: ./radpulse.toml if present)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _CONTRIBUTORS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"radpulse: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
