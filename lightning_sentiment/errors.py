"""User-facing errors: one line that says what was wrong and what to do."""


class SentimentError(Exception):
    """A problem the user can fix (bad data, bad setting, bad checkpoint).

    Entry points print only the message, without a traceback.
    """
