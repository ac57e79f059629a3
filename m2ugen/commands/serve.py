"""``m2ugen serve``: the gradio web UI, on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import argparse
import ipaddress
import sys

from m2ugen.commands import common


def register(subparsers: argparse._SubParsersAction) -> None:
    from m2ugen.app import DEFAULT_HOST, DEFAULT_PORT

    parser = subparsers.add_parser(
        "serve", help="start the web UI (http://127.0.0.1:7860)",
        description="Start the gradio web UI. It listens on 127.0.0.1 only and makes no public link, "
                    "unless --host or --share say otherwise.",
        epilog="example: m2ugen serve --demo --port 7860")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    common.add_model_options(parser)
    parser.set_defaults(func=common.run_with_warnings(run))


def run(args: argparse.Namespace) -> int:
    from m2ugen.app import serve
    from m2ugen.errors import ConfigError

    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port} is not a TCP port (1-65535)")
    if not _is_loopback(args.host):
        print(f"warning: listening on {args.host}: other machines on the network can use this UI", file=sys.stderr)
    if args.share:
        print("warning: --share makes the UI public through a gradio.live link", file=sys.stderr)
    serve(common.load_assistant(args), host=args.host, port=args.port, share=args.share)
    return 0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
