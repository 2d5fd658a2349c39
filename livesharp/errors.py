"""The one exception type a user sees: its message is a single line naming the problem and the fix."""


class LivesharpError(Exception):
    """Bad input or environment. The CLI prints ``error: <message>`` and exits non-zero, no traceback."""

    exit_code = 1


class ModelError(LivesharpError, ValueError):
    """A model name, checkpoint or graph that cannot be used."""
