"""The one exception type that the CLI turns into a clear message instead of a traceback."""


class InputError(Exception):
    """Bad input from the user: a missing, corrupt or wrong-format file, a wrong shape or dtype."""
