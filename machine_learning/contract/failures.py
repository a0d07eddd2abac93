"""The failure contract of both CLIs: one line on stderr and an exit code a workflow can branch on.

0 ok; 1 a decision said no (gate failed, promotion refused, GitHub refused) or something
unexpected; 2 bad input (arguments, files, payloads); 3 the tracking server is unreachable or
failing. One hierarchy, one base: every failure a command understands is a :class:`Failure`
whose class says the exit code and whose message is the one line::

    Failure                      1  a command failed in a way it understands
    ├── Refused                  1  a decision said no (promotion, verification, GitHub, ...)
    ├── BadInput                 2  arguments, files, payloads: the line names what and where
    ├── Unreachable              3  the tracking server is unreachable or failing
    └── Unexpected               1  anything else, made by classify (traceback with --debug)

The modules subclass these (``PromotionRefused(Refused)``, ``RecordError(BadInput)``, ...), and
the two ``main``s catch the base once, in :func:`run_command`; a foreign exception (MLflow's,
an OSError, ...) goes through :func:`classify` there. The traceback is printed only with
``--debug`` or ``CI_DEBUG=1``.

Standard library only; MLflow's and requests' exception types are looked up only when those
libraries were imported by the command, so the comment job never loads them.
"""

from __future__ import annotations

import gc
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import ClassVar, NoReturn

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_CODES = (
    "exit codes: 0 ok; 1 a decision said no (gate failed, promotion refused, GitHub refused) or "
    "an unexpected error; 2 bad input (arguments, files); 3 tracking server unreachable or failing"
)
MESSAGE_LIMIT = 400
# MLflow retries a failing call for ~4 minutes by default; ours report within 60 s. A user can
# still raise each with MLflow's own variable: only unset ones get these values.
MLFLOW_DEFAULTS = {
    # A dead or failing server costs seconds, not MLflow's four minutes of retries.
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    # MLflow's INFO lines ("Creating initial MLflow database tables", "Detected uv project")
    # answer nothing the user asked; its warnings still show.
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
# train and compare have minutes of work behind them when they first reach MLflow: a restart of
# the tracking server (a deploy, a crash and its restart policy) must not cost it. Their calls
# ride out an outage of OUTAGE_TOLERANCE_S: 6 retries, MLflow (urllib3) backing off 0, 2, 4, 8,
# 16 and 32 s between them (62 s, plus up to 0.5 s of jitter each; see retry_window_s), for a
# refused connection, a dropped one or a 408/429/5xx answer alike. An outage that lasts longer
# still ends in exit 3: about 65 s after it began when no run was created yet; when one was,
# up to OUTAGE_TOLERANCE_S more is spent waiting for /health to mark the run FAILED.
OUTAGE_TOLERANCE_S = 60
TRAINING_MLFLOW_DEFAULTS = MLFLOW_DEFAULTS | {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "6"}


class Failure(Exception):
    """A command failed in a way it understands: the message is the line for the user, the
    class says the exit code."""

    code: ClassVar[int] = EXIT_FAILED


class Refused(Failure):
    """A decision said no: the gate, a promotion or rollback, verification, GitHub."""

    code = EXIT_FAILED


class BadInput(Failure):
    """Arguments, files or payloads that cannot be used; the line names what and where."""

    code = EXIT_BAD_INPUT


class Unreachable(Failure):
    """The tracking server does not answer, or fails."""

    code = EXIT_UNREACHABLE


class Unexpected(Failure):
    """Anything no module understood: one line, the traceback only with --debug."""

    code = EXIT_FAILED


def mlflow_defaults(
    env: dict[str, str] | os._Environ = os.environ,
    defaults: Mapping[str, str] = MLFLOW_DEFAULTS,
) -> None:
    """MLflow settings for a command line (MLFLOW_DEFAULTS, or TRAINING_MLFLOW_DEFAULTS for the
    commands that train); the user's own values win."""
    for name, value in defaults.items():
        env.setdefault(name, value)


def retry_window_s(settings: Mapping[str, str]) -> float:
    """Seconds MLflow's client backs off in all before it gives up a call, jitter aside: urllib3
    retries at once the first time, then waits factor * 2^(n-1) s before the nth retry."""
    retries = int(settings["MLFLOW_HTTP_REQUEST_MAX_RETRIES"])
    factor = float(settings["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"])
    return sum(factor * 2 ** (n - 1) for n in range(2, retries + 1))


def classify(error: BaseException) -> Failure:
    """The failure an exception is: itself when it is one, else the one line and exit code of
    a foreign exception a command let escape."""
    if isinstance(error, Failure):
        return error
    if _is_tracking_error(error):
        return Unreachable(f"the tracking server failed: {first_line(error)}")
    if isinstance(error, MemoryError):
        return BadInput("out of memory: ask for less work (fewer battles or rows)")
    if isinstance(error, OSError):
        where = f" {error.filename}" if error.filename else ""
        return BadInput(f"cannot use{where}: {error.strerror or error}")
    return Unexpected(
        f"unexpected {type(error).__name__}: {first_line(error)} "
        "(rerun with --debug or CI_DEBUG=1 for the traceback)"
    )


def run_command(
    command: Callable[[], int], debug: bool, env: Mapping[str, str] = os.environ
) -> int:
    """Run a CLI command under the contract: its return code, or one line and the failure's."""
    try:
        return command()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Failure as failure:
        return _report(failure, debug or env.get("CI_DEBUG") == "1")
    except Exception as error:  # not one of ours (MLflow's, an OSError, ...): classify names it
        return _report(classify(error), debug or env.get("CI_DEBUG") == "1")


def _report(failure: Failure, traceback_too: bool) -> int:
    """The failure's line on stderr (the traceback first when asked); its exit code."""
    if traceback_too:
        traceback.print_exc()
    print(f"error: {failure}", file=sys.stderr)
    return failure.code


def _is_tracking_error(error: BaseException) -> bool:
    kinds = [
        getattr(sys.modules.get(module), name, None)
        for module, name in (
            ("mlflow.exceptions", "MlflowException"),
            ("requests.exceptions", "RequestException"),
        )
    ]
    return any(kind is not None and isinstance(error, kind) for kind in kinds)


def exit_process(status: int) -> NoReturn:
    """Exit with ``status``, leaving what the command built to the OS: the interpreter's last
    garbage collection walks every object MLflow, scikit-learn, XGBoost and pydantic made,
    ~1 s of each command (benchmarks/exit_cost.py). atexit handlers still run."""
    gc.freeze()
    sys.exit(status)


def first_line(error: BaseException) -> str:
    """An error as one bounded line (its first line, else its type's name)."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= MESSAGE_LIMIT else f"{text[: MESSAGE_LIMIT - 3]}..."
