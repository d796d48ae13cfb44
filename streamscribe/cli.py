"""``streamscribe`` with subcommands: ``serve`` (the server), ``stream`` (send a file), ``mic``
and ``type`` (the microphone clients), ``ray`` (the model on a Ray cluster) and ``hash-key`` (a
line for the API key file)."""

from __future__ import annotations

import argparse
import sys

from streamscribe import __version__


def build_parser() -> argparse.ArgumentParser:
    from client import mic as mic_command
    from client import stream as stream_command
    from client import voice_typing as type_command
    from server import cli as serve_command
    from server import ray_cli as ray_command

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
    mic_command.add_arguments(
        commands.add_parser(
            "mic", help="live captions from the microphone", description=mic_command.__doc__
        )
    )
    type_command.add_arguments(
        commands.add_parser(
            "type", help="type what you say into any application", description=type_command.__doc__
        )
    )
    ray_command.add_arguments(
        commands.add_parser(
            "ray",
            help="deploy the model on a Ray cluster (for --backend ray)",
            description=ray_command.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )
    hash_key = commands.add_parser(
        "hash-key",
        help="print the key file line for an API key read from stdin",
        description="Reads an API key from stdin (never from the command line, where other "
        "users could see it) and prints its line for --api-key-file.",
    )
    hash_key.add_argument("--name", default="", help="name shown in logs and metrics")
    hash_key.add_argument("--generate", action="store_true", help="make a new random key")
    hash_key.set_defaults(run=run_hash_key)
    return parser


def run_hash_key(args: argparse.Namespace) -> int:
    import secrets

    from server.policy.auth import key_line

    if args.generate:
        key = "sk-ss-" + secrets.token_urlsafe(24)
        print(f"key (give it to the client, then forget it): {key}", file=sys.stderr)
    else:
        key = sys.stdin.readline().strip()
        if not key:
            print("streamscribe hash-key: no key on stdin", file=sys.stderr)
            return 2
    print(key_line(key, args.name))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
