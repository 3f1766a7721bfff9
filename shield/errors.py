"""One error tree. `ShieldError` messages are written for users: the CLI prints them as one line and exits with
the error's `exit_code` (the README's "Exit statuses" table)."""

#: Exit statuses of `llm-shield` (documented in the README).
EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INCOMPLETE = 3
EXIT_INTERRUPTED = 130


class ShieldError(Exception):
    """Base of every error this project raises on purpose."""

    exit_code: int = EXIT_USAGE


class ConfigError(ShieldError):
    """Bad settings, options or catalog contents: fix the input and run again."""


class CatalogError(ConfigError):
    """The model catalog is missing, malformed, or has an entry that is not allowed."""


class ModelUnavailableError(ShieldError):
    """A model cannot be fetched, verified or loaded."""


class ChecksumMismatchError(ModelUnavailableError):
    """A model file's sha256 differs from the catalog's."""


class MissingExtraError(ConfigError):
    """A command needs an optional dependency group that is not installed."""

    def __init__(self, what: str, extra: str, module: str) -> None:
        super().__init__(f"{what} needs the `{extra}` extra ({module} is not installed): "
                         f"pip install 'llm-shield-workers[{extra}]'")


class TransientError(ShieldError):
    """A failure that may pass on retry (a connection dropped, a service restarting)."""

    exit_code = EXIT_INCOMPLETE


class BrokerUnavailableError(TransientError):
    """The Redis broker cannot be reached."""


class ScanIncompleteError(TransientError):
    """A job stopped before every row was scanned: no live worker, no progress, rows that could not be scanned."""


class InterruptedScanError(ShieldError):
    """The user interrupted a job (Ctrl-C, SIGINT, SIGTERM); what was finished is written."""

    exit_code = EXIT_INTERRUPTED


class InputError(ShieldError):
    """An input cannot be opened or read at all (a single bad row is an error row instead)."""
