"""The one error a bad sweep file raises."""


class SweepError(ValueError):
    """A bad sweep file: the message is one line naming the field."""
