"""TorchServe's start-line flags (``torchserve --start ARGS`` becomes ``fastserve ARGS``):
the ones fastserve honours, the ones it accepts and ignores, and which were given."""

from __future__ import annotations

from typing import Any

from .ts_config import ENV_FILE

IGNORED_FLAGS = {"ncs": "fastserve writes no config snapshots",
                 "foreground": "fastserve always runs in the foreground",
                 "log_config": "log4j2 files do not apply; use --log-level and --log-format",
                 "start": "fastserve starts the server when run",
                 "workflow_store": "workflows are not supported",
                 "plugins_path": "Java plugins do not apply",
                 "cpp_log_config": "the C++ backend does not apply"}


def add_flags(p: Any, size: Any) -> None:
    """TorchServe's start-line flags (``size`` parses --max-archive-size)."""
    g = p.add_argument_group("TorchServe start line (docs/migrating-from-torchserve.md)")
    g.add_argument("--model-store", metavar="DIR",
                   help="a TorchServe model store: --models then names what it loads "
                        "(all | a.mar | name=a.mar, comma- or space-separated)")
    g.add_argument("--ts-config", metavar="FILE",
                   help=f"TorchServe's config.properties (default: ${ENV_FILE})")
    g.add_argument("--max-archive-size", type=size, default=None, metavar="SIZE",
                   help="largest size a .mar may inflate to (default 32GB)")
    g.add_argument("--disable-token-auth", action="store_true",
                   help="accepted: fastserve checks tokens only with --auth-token-file")
    g.add_argument("--enable-model-api", action="store_true",
                   help="accepted: the management API (its own port) always registers models")
    g.add_argument("--ncs", "--no-config-snapshots", dest="ncs", action="store_true",
                   help="accepted (ignored): " + IGNORED_FLAGS["ncs"])
    g.add_argument("--foreground", action="store_true",
                   help="accepted (ignored): " + IGNORED_FLAGS["foreground"])
    g.add_argument("--log-config", metavar="FILE",
                   help="accepted (ignored): " + IGNORED_FLAGS["log_config"])
    g.add_argument("--start", action="store_true", help="accepted (ignored)")
    for flag in ("--workflow-store", "--plugins-path", "--cpp-log-config"):
        g.add_argument(flag, metavar="PATH", help="accepted (ignored)")


def given_flags(parser: Any, argv: list[str]) -> set[str]:
    """The dests of the flags written on the command line (they win over the config)."""
    options = {opt: a.dest for a in parser._actions for opt in a.option_strings}
    given = set()
    for token in argv:
        if not token.startswith("--"):
            continue
        name = token.split("=", 1)[0]
        matches = [d for opt, d in options.items() if opt == name] or \
            [d for opt, d in options.items() if opt.startswith(name)]
        if len(set(matches)) == 1:
            given.add(matches[0])
    return given


def ignored_flags(args: Any) -> list[str]:
    notes = [f"--{dest.replace('_', '-')}: ignored ({why})"
             for dest, why in IGNORED_FLAGS.items() if getattr(args, dest, None)]
    if args.enable_model_api:
        notes.append("--enable-model-api: the management API always registers models; it "
                     "binds 127.0.0.1 unless --management-host says otherwise")
    return notes
