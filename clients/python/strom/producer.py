"""SimpleProducer: create topics and send messages."""

from ._connection import Connection
from ._payload import put, put_headers
from .errors import StromError


class SimpleProducer:
    """Sends messages over Strom's JSON protocol.

    ``SimpleProducer()`` talks to 127.0.0.1:9092 (the broker's Kafka port, which also speaks
    JSON); ``host``/``port`` or the ``STROM_JSON_ADDR`` environment variable (``host:port``)
    point it elsewhere. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, host=None, port=None, timeout=60.0, reconnect_timeout=15.0):
        self._conn = Connection(host, port, timeout=timeout, reconnect_timeout=reconnect_timeout)

    @property
    def address(self):
        return f"{self._conn.host}:{self._conn.port}"

    def connect(self):
        self._conn.connect()
        return self

    def close(self):
        self._conn.close()

    def __enter__(self):
        if not self._conn.connected:
            self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    def create_topic(self, topic, partitions=None, configs=None, exist_ok=True):
        """Creates ``topic`` (``partitions``: the broker's default when None). An existing topic
        is fine unless ``exist_ok`` is False; the answer says ``"created": False`` then."""
        request = {"type": "create_topic", "topic": topic}
        if partitions is not None:
            request["partitions"] = partitions
        if configs:
            request["configs"] = {k: str(v) for k, v in configs.items()}
        try:
            response = self._conn.request(request)
        except StromError as e:
            if e.code != "topic_already_exists" or not exist_ok:
                raise
            described = self.describe_topic(topic)
            return {"ok": True, "topic": topic, "partitions": len(described["partitions"]),
                    "created": False}
        response["created"] = True
        return response

    def describe_topic(self, topic):
        return self._conn.request({"type": "describe_topic", "topic": topic})

    def list_topics(self):
        return self._conn.request({"type": "list_topics"})["topics"]

    def send(self, topic, value, partition=None, key=None, headers=None, timestamp=None):
        """Writes one message and returns the broker's answer once it is on disk:
        ``{"topic", "partition", "offset", "timestamp"}``. ``value`` and ``key`` are str, bytes
        or None (``value=None`` is a tombstone). Without ``partition`` the broker picks one:
        by the key's hash, or round-robin without a key."""
        request = {"type": "produce", "topic": topic}
        put(request, "value", value)
        if key is not None:
            put(request, "key", key)
        if partition is not None:
            request["partition"] = partition
        put_headers(request, headers)
        if timestamp is not None:
            request["timestamp"] = int(timestamp)
        return self._conn.request(request)

    def flush(self):
        """Every :meth:`send` has returned after the broker stored the message: nothing to do."""
