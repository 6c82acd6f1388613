"""Errors pricer raises on bad input: each names the file, row, column or option at fault."""


class PricerError(Exception):
    """Base of every error pricer raises on purpose."""


class DataError(PricerError):
    """Product data that is missing, unreadable or invalid."""


class OptionError(PricerError):
    """An option or argument with a bad value."""


class ModelError(PricerError):
    """A model, adapter or quantization backend that cannot be loaded here."""


class BaselineError(PricerError):
    """A stored baseline that is missing, unreadable or not comparable."""


class HistoryError(PricerError):
    """A benchmark run or accuracy history file that is unreadable, foreign or cannot be appended to."""


class OutputError(PricerError, OSError):
    """An output (baseline, history, summary, chart, saved run) that cannot be written: names the path and the
    cause. An OSError too, so code that guards a write against the file system still catches it."""
