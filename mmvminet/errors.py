"""Errors whose message is the whole story for the user.

tools/train.py and tools/test.py print a ``ReportableError`` as one line, ``error: MESSAGE``,
and exit with status 1; any other exception keeps its traceback. Each class also derives from
the built-in type a caller would catch without knowing mmvminet.
"""


class ReportableError(Exception):
    """A problem with the user's data, config, checkpoint or run, said in one sentence."""


class DatasetError(ReportableError, ValueError):
    """A dataset that cannot be trained or tested on: no samples, or an undecodable image."""


class NonFiniteLossError(ReportableError, FloatingPointError):
    """Training produced a NaN or infinite loss (or weights) and was stopped."""
