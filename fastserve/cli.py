"""`fastserve --models DIR`: parse the command line and run the server."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import sys
from pathlib import Path

from . import ts_config, ts_flags
from ._version import __version__
from .config import ServerConfig, parse_size
from .logs import setup_logging


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {value}")
    return value


class _DefaultsHelp(argparse.HelpFormatter):
    """--help shows each flag's default (not for switches, nor where there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "%(default)" in text or "(default" in text or not action.option_strings or (
                default is None or default is False or default == argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fastserve",
        description="Serve every PyTorch model in a folder over the KServe v2, TorchServe "
                    "and TF Serving HTTP APIs. Reference: docs/reference.md.",
        formatter_class=_DefaultsHelp,
    )
    p.add_argument("--version", action="version", version=f"fastserve {__version__}")
    p.add_argument("--models", nargs="+", metavar="DIR", help="the model repository (with "
                   "--model-store: the archives to load, as TorchServe's --models)")
    p.add_argument("--host", default="127.0.0.1", help="inference address (0.0.0.0: all)")
    p.add_argument("--port", type=_port, default=8080, help="inference port")
    p.add_argument("--management-host", default="127.0.0.1", help="management address")
    p.add_argument("--management-port", type=_port, default=8081, help="management port")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="server processes sharing the port")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (models may "
                   "override with device in config.toml)")
    p.add_argument("--torch-threads", type=_positive_int, default=None, metavar="N",
                   help="PyTorch intra-op threads (default: cores / (workers x instances))")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error", "critical"], help="log level")
    p.add_argument("--access-log", action="store_true", help="one line per request")
    p.add_argument("--log-format", default="text", choices=["text", "json"],
                   help="one text line or one JSON object per record")
    p.add_argument("--max-request-size", type=_size, default="100MB", metavar="SIZE",
                   help="largest request body (after inflating), e.g. 64KB, 100MB, 1GB")
    p.add_argument("--poll-interval", type=float, default=None, metavar="S",
                   help="rescan the repository every S seconds (default: off)")
    p.add_argument("--drain-timeout", type=float, default=30.0, metavar="S",
                   help="on SIGTERM, how long in-flight requests may take")
    p.add_argument("--allow-shared-memory", action="store_true",
                   help="allow clients to register system shared-memory regions")
    p.add_argument("--auth-token-file", default=os.environ.get("FASTSERVE_AUTH_TOKEN_FILE"),
                   metavar="FILE", help="require Authorization: Bearer <token> (default: "
                   "$FASTSERVE_AUTH_TOKEN_FILE, else no auth)")
    p.add_argument("--grpc-port", type=_port, default=8001,
                   help="gRPC inference port on the inference host (KServe v2/Triton and "
                   "TorchServe gRPC APIs; 0: off)")
    p.add_argument("--grpc-management-port", type=_port, default=0,
                   help="gRPC management port on the management host (0: off)")
    p.add_argument("--strict-readiness", action="store_true",
                   help="Triton's rule: not ready while any model is not READY (default: "
                        "ready once a model serves)")
    ts_flags.add_flags(p, _size)
    return p


def parse_config(argv: list[str] | None = None) -> ServerConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    try:
        ts = ts_config.resolve(args.model_store, args.models if args.model_store else None,
                               args.ts_config, ts_flags.given_flags(parser, argv))
    except ts_config.TsConfigError as exc:
        sys.exit(f"fastserve: error: {exc}")
    if ts.store is None and not args.models:
        parser.error("the following arguments are required: --models DIR (or --model-store "
                     "DIR, TorchServe's start line)")
    if ts.store is None and len(args.models) > 1:
        parser.error("--models takes one DIR (or, with --model-store, the archives to load)")
    models = ts.store or Path(args.models[0])
    args.models = str(models)
    if not models.is_dir():
        sys.exit(f"fastserve: error: --models {args.models}: not a directory")
    if not os.access(models, os.R_OK | os.X_OK):
        sys.exit(f"fastserve: error: --models {args.models}: not readable")
    token = Path(args.auth_token_file) if args.auth_token_file else None
    if token is not None and not os.access(token, os.R_OK):
        sys.exit(f"fastserve: error: --auth-token-file {token}: not readable")
    config = ServerConfig(
        models=models.resolve(), host=args.host, port=args.port,
        management_host=args.management_host, management_port=args.management_port,
        workers=args.workers, device=args.device, torch_threads=args.torch_threads,
        log_level=args.log_level, access_log=args.access_log, log_format=args.log_format,
        max_request_size=args.max_request_size, poll_interval=args.poll_interval,
        drain_timeout=args.drain_timeout, allow_shared_memory=args.allow_shared_memory,
        auth_token_file=token, strict_readiness=args.strict_readiness,
        grpc_port=args.grpc_port, grpc_management_port=args.grpc_management_port,
    )
    config = _with_torchserve(config, ts, args, argv)
    if config.workers > 1 and config.shares_port:
        parser.error("one port for the inference and management APIs (management_address = "
                     "inference_address) cannot be shared by --workers > 1: give management "
                     "its own port")
    return config


def _with_torchserve(config: ServerConfig, ts: ts_config.TsStart, args: argparse.Namespace,
                     argv: list[str]) -> ServerConfig:
    """config.properties' settings under the flags given, and the model store's."""
    fields = {f.name for f in dataclasses.fields(ServerConfig)}
    changes = {k: v for k, v in ts.server.items() if k in fields}
    notes = ts.notes + ts_flags.ignored_flags(args)
    notes += [f"config.properties: {k} is not used by this build" for k in ts.server
              if k not in fields]
    if args.max_archive_size is not None:
        ts.settings.max_archive_size = args.max_archive_size
    if ts.store is not None or args.ts_config or ts.server:
        changes["ts_argv"] = tuple(argv)
    return dataclasses.replace(config, store=ts.settings, ts_notes=tuple(notes), **changes)


def main(argv: list[str] | None = None) -> int:
    # No cyclic GC until the models first load (app.App.start turns it back on): with
    # torch's ~300k objects alive each full pass costs ~0.1 s, and importing torch and
    # fastserve runs several (measured: 0.1-0.25 s of CPU off start to first answer).
    gc.disable()
    config = parse_config(argv)
    if config.workers > 1 and not os.environ.get("FASTSERVE_CONTROL_SOCKET"):
        gc.enable()  # the --workers parent loads no model; its workers run main() too
    setup_logging(config.log_level, config.log_format, config.access_log)
    if not os.environ.get("FASTSERVE_CONTROL_SOCKET"):  # a --workers child: the parent said it
        for note in config.ts_notes:
            logging.getLogger("fastserve").info("%s", note)
    from .app import run

    return run(config)
