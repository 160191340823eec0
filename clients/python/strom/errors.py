"""The exceptions of the package: every failure the broker reports is a :class:`StromError`
carrying the broker's error ``code`` (e.g. ``"unknown_topic"``, ``"unknown_member"``) and its
``message``."""


class StromError(Exception):
    """The broker refused a request, or the connection failed."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StromConnectionError(StromError):
    """The broker could not be reached, or the connection dropped."""

    def __init__(self, message):
        super().__init__("connection_error", message)
