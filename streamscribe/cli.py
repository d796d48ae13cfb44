"""``streamscribe`` with subcommands: ``serve`` (the server) and ``stream`` (send a file)."""

from __future__ import annotations

import argparse
import sys

from streamscribe import __version__


def build_parser() -> argparse.ArgumentParser:
    from client import stream as stream_command
    from server import cli as serve_command

    parser = argparse.ArgumentParser(
        prog="streamscribe", description="Real-time streaming dictation."
    )
    parser.add_argument("--version", action="version", version=f"streamscribe {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_command.add_arguments(
        commands.add_parser("serve", help="run the server", description=serve_command.__doc__)
    )
    stream_command.add_arguments(
        commands.add_parser(
            "stream", help="stream an audio file to a server", description=stream_command.__doc__
        )
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
