"""What outpost's commands raise; the CLI turns each into a message and an exit status."""


class OutpostError(Exception):
    """A command failed; the message says what went wrong."""


class BadArgument(OutpostError):
    """An argument is wrong; the message names it."""
