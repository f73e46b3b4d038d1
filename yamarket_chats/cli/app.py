"""Running a command: parse, set up signals and logging, run, turn the outcome into an exit code."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import os
import sys
from collections.abc import Sequence

from .commands import command
from .connect import ENV_API_KEY, ENV_DEBUG, ENV_OAUTH_TOKEN
from .failures import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_OK, failure
from .logs import configure_logging, say
from .output import log_text, one_line
from .parser import build_parser
from .signals import Interrupted, ignore_signals, install_signal_handlers, interruptible

__all__ = ["main", "run"]


def run(argv: Sequence[str] | None = None, *, own_process: bool = False) -> int:
    """Run the CLI with `argv` (default: ``sys.argv[1:]``); return the exit code.

    No command at all prints the help on stdout (exit 0). ``own_process``
    (the console script's): the process is the CLI's alone, so the collector
    is tuned for it (`tune_gc`); never in a host process such as a test run.
    """
    name, secrets = "-", [os.environ.get(ENV_API_KEY), os.environ.get(ENV_OAUTH_TOKEN)]
    try:
        install_signal_handlers()
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, io.TextIOWrapper):
                # Text from the API or argv that is not valid Unicode prints escaped.
                stream.reconfigure(errors="backslashreplace")
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:  # bare `yamarket-chats`: what it can do
            parser.print_help()
            return EXIT_OK
        name = args.command
        secrets += [getattr(args, "api_key", None), getattr(args, "oauth_token", None)]
        configure_logging(args, secrets)
        run_command = command(name)  # imports the command's modules: the start-up
        if own_process:
            tune_gc()
        return asyncio.run(interruptible(run_command(args)))
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:  # Interrupted too
        code = 128 + exc.signum if isinstance(exc, Interrupted) else EXIT_INTERRUPTED
        say("yamarket-chats: interrupted", level=logging.WARNING, exit_code=code)
        return code
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and let nothing flush into the pipe.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        if os.environ.get(ENV_DEBUG):
            raise
        code, reason = failure(exc)
        reason = log_text(one_line(reason, secrets))
        say(f"yamarket-chats {name}: error: {reason}", level=logging.ERROR, exit_code=code)
        return code


#: The CLI's collector thresholds: a young collection per 50,000 allocations
#: instead of 700, so a request's objects die young instead of being promoted
#: and rescanned by full collections (see docs/benchmarks.md).
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    """Tune the cyclic collector for the CLI's own process (the library never does).

    The start-up's objects (modules, classes, the command's imports) go to the
    permanent generation, which collections no longer scan; then higher
    thresholds. Full collections still happen, rarely.
    """
    gc.collect()  # what is garbage now is not frozen with the rest
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: ``yamarket-chats``."""
    try:
        try:
            install_signal_handlers()  # first: a Ctrl-C from here on exits cleanly
            code = run(argv, own_process=True)
        finally:
            ignore_signals()
    except Interrupted as exc:  # before run() took over, or after it returned
        code = 128 + exc.signum
        say("yamarket-chats: interrupted", level=logging.WARNING, exit_code=code)
    sys.exit(code)
