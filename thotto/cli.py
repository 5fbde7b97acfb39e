"""The ``thotto`` command. ``python run.py`` is ``thotto serve`` on embedded defaults.

Human-readable tables by default, ``--json`` for scripts. User mistakes (a bad setting, a locked
database, an unknown user) end with one clear line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

import actors
from thotto.config import load_settings
from thotto.engine.errors import ConfigError
from thotto.errors import ThottoError, ValidationError
from thotto.files import PRIVATE_UMASK
from thotto.arguments import build_parser

EXIT_OK = 0
EXIT_USER_ERROR = 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    # Whatever Thotto writes (database, key, sandbox state, media) is its owner's alone; the
    # caller's umask comes back afterwards, for programs that call main() in-process.
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        if args.command in ("openapi", "settings", "sandbox"):
            from thotto import commands

            return trio.run(getattr(commands, args.command), args)
        settings = load_settings(args.config, data_dir=args.data_dir, database_url=args.database_url,
                                 role=getattr(args, "role", None))
        from thotto import commands, logs

        # A one-shot command says what it did or one line of why not; the background chatter of
        # the engine it opens (the monitor's alerts, say) is the server's to log.
        level = settings.log_level if args.command == "serve" else "ERROR"
        logs.configure(level, json_lines=settings.log_format.value == "json",
                       secrets=(settings.reddit_client_secret, settings.encryption_key,
                                settings.webhook_secret))
        command = commands.COMMANDS[(args.command, getattr(args, "subcommand", None))]
        if args.command not in ("serve", "init", "migrate"):
            _require_data_dir(settings)
        args.password = _read_password(args) if (args.command, getattr(args, "subcommand", None)) == ("account", "link") else None
        args.file_data = _read_file(args.file) if getattr(args, "file", None) else None
        if args.command != "serve":
            if args.command == "media":
                argv = _media_upload_argv(args)
            elif getattr(args, "image", None):
                argv = _absolute_images(argv)
            reply = _run_in_server(settings, argv, args)
            if reply is not None:
                return reply
        return trio.run(command, settings, args)
    except ThottoError as error:
        print(f"thotto: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except actors.StartupError as error:
        print(f"thotto: {_startup_failure(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(previous_umask)


def _require_data_dir(settings) -> None:
    """Commands work on an existing installation: never make an empty one by accident (a CLI run
    from another directory would otherwise find no users in a brand-new database)."""
    from thotto.store import POSTGRES_SCHEMES

    data_dir = Path(settings.data_dir).resolve()
    database = settings.resolved_database_url()
    missing = (not data_dir.is_dir() if database.startswith(POSTGRES_SCHEMES)
               else not Path(database).exists())
    if missing:
        raise ConfigError(
            f"no Thotto installation at {data_dir} (from --data-dir, THOTTO_DATA_DIR or the config "
            "file, else ./thotto-data in the current directory); point --data-dir at the directory "
            "your server uses, or run `thotto init` to start a new one there")


def _run_in_server(settings, argv: list[str], args: argparse.Namespace) -> int | None:
    """While a server holds the SQLite file, run the command in it (thotto.control); None when
    no server listens, and the command runs here."""
    from thotto import control

    request = control.ControlRequest(argv=argv, password=args.password, file=args.file_data)
    try:
        reply = control.run_remotely(control.socket_path(settings.data_dir), request)
    except (OSError, ConnectionError) as error:
        raise ConfigError(f"the running server did not answer on its control socket ({error}); "
                          "is it stopping? Try again in a moment") from None
    if reply is None:
        return None
    sys.stdout.write(reply.stdout)
    sys.stderr.write(reply.stderr)
    return reply.exit_code


def _media_upload_argv(args: argparse.Namespace) -> list[str]:
    """``media upload`` as a running server gets it: the image's absolute path (the server reads
    the file itself, streaming it, rather than receiving it whole over the control socket; it
    runs as this OS user, which the socket checks)."""
    path = Path(args.path).resolve()
    if not path.is_file():
        raise ValidationError(f"{args.path} is not a file; give the path of a PNG, JPEG, GIF or WebP image")
    argv = ["media", "upload", str(path), "--user", args.user]
    return argv + ["--keep-metadata"] * args.keep_metadata + ["--json"] * args.json


def _absolute_images(argv: list[str]) -> list[str]:
    """``--image`` paths made absolute: a running server reads the files itself (as this OS user,
    which the control socket checks), from its own working directory."""
    fixed, expect_path = [], False
    for arg in argv:
        if expect_path:
            arg, expect_path = str(Path(arg).resolve()), False
        elif arg == "--image":
            expect_path = True
        elif arg.startswith("--image="):
            arg = "--image=" + str(Path(arg.removeprefix("--image=")).resolve())
        fixed.append(arg)
    return fixed


def _startup_failure(error: BaseException) -> str:
    """The reason a server could not start, in one line: the first Thotto error (which says what
    to do) among the causes, else the innermost cause."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ThottoError):
            return str(cause)
        if cause.__cause__ is None:
            break
        cause = cause.__cause__
    return f"{getattr(error, 'child', 'a service')} could not start: {cause}"


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as error:
        raise ValidationError(f"cannot read {path}: {error.strerror}") from None


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(f"Reddit password for u/{args.reddit_username}: ")


if __name__ == "__main__":
    sys.exit(main())
