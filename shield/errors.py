"""One error tree. `ShieldError` messages are written for users: the CLI prints them as one line."""


class ShieldError(Exception):
    """Base of every error this project raises on purpose."""


class ConfigError(ShieldError):
    """Bad settings, options or catalog contents: fix the input and run again."""


class CatalogError(ConfigError):
    """The model catalog is missing, malformed, or has an entry that is not allowed."""


class ModelUnavailableError(ShieldError):
    """A model cannot be fetched, verified or loaded."""


class ChecksumMismatchError(ModelUnavailableError):
    """A model file's sha256 differs from the catalog's."""


class TransientError(ShieldError):
    """A failure that may pass on retry (a connection dropped, a service restarting)."""


class BrokerUnavailableError(TransientError):
    """The Redis broker cannot be reached."""


class InputError(ShieldError):
    """An input cannot be opened or read at all (a single bad row is an error row instead)."""
