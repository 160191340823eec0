"""SimpleConsumer: read messages from chosen partitions, or as a member of a consumer group."""

import time
import uuid

from ._connection import Connection
from ._payload import message
from .errors import StromError

#: Most messages one poll returns unless told otherwise.
MAX_MESSAGES_DEFAULT = 100
#: The longest a single broker-side wait may last (the broker's own bound, 30 s).
_WAIT_MS_MAX = 30_000
#: When polling several partitions without a group, the longest wait on one of them before
#: looking at the next.
_PARTITION_WAIT_S = 0.1


class SimpleConsumer:
    """Reads messages over Strom's JSON protocol.

    Two ways to use it:

    * ``subscribe(topic, partition=0)`` (or without ``partition`` and without a group: every
      partition of the topic): the broker keeps this consumer's position under its
      ``consumer_id`` (a random one unless given), so each message is returned once.
    * ``SimpleConsumer(group_id="g")`` then ``subscribe(topic)``: joins consumer group ``g``.
      The broker splits the topic's partitions among the group's members, rebalances when
      members come and go (a member that stops polling for ``session_timeout_ms`` is
      removed), and :meth:`poll` returns only messages of this member's partitions. Positions
      are the group's committed offsets, so members resume where the group left off.

    ``host``/``port`` or ``STROM_JSON_ADDR`` choose the broker, as for ``SimpleProducer``.
    """

    def __init__(self, host=None, port=None, group_id=None, consumer_id=None,
                 session_timeout_ms=None, auto_commit=True, timeout=60.0, reconnect_timeout=15.0):
        if group_id is not None and not auto_commit:
            raise ValueError("group members commit as they poll: auto_commit=False needs group_id=None")
        self._conn = Connection(host, port, timeout=timeout, reconnect_timeout=reconnect_timeout)
        self.group_id = group_id
        self.consumer_id = consumer_id or f"py-{uuid.uuid4().hex[:12]}"
        self.session_timeout_ms = session_timeout_ms
        self.auto_commit = auto_commit
        # Without a group: (topic, partition) -> local position (None: the broker's).
        self._partitions = {}
        # With a group.
        self._topics = []
        self.member_id = None
        self.generation = None
        self._assignment = []
        self._next = 0

    # -- connection -------------------------------------------------------------------------

    def connect(self):
        self._conn.connect()
        return self

    def close(self):
        """Leaves the group (if a member) and closes the connection."""
        if self.member_id is not None:
            try:
                self._conn.request({"type": "leave_group", "group": self.group_id,
                                    "member_id": self.member_id})
            except StromError:
                pass  # Expired already, or the broker is gone: the session ends either way.
            self.member_id = None
        self._conn.close()

    def __enter__(self):
        if not self._conn.connected:
            self.connect()
        return self

    def __exit__(self, *exc):
        self.close()

    # -- subscribing ------------------------------------------------------------------------

    def subscribe(self, topic, partition=None, offset=None):
        """Reads ``topic``: one ``partition`` of it, or (no partition) all of it, shared with
        the group when the consumer has a ``group_id``. ``offset`` starts a partition there."""
        if partition is None and self.group_id is not None:
            if offset is not None:
                raise ValueError("a group member starts at the group's committed offsets")
            if topic not in self._topics:
                self._topics.append(topic)
            self._join()
            return self.assignment()
        if partition is None:
            count = len(self._conn.request({"type": "describe_topic", "topic": topic})["partitions"])
            for p in range(count):
                self._partitions[(topic, p)] = offset
        else:
            self._partitions[(topic, int(partition))] = offset
        if offset is not None and self.auto_commit:
            # Move the broker-side position now, so that the next poll starts there.
            for (t, p), o in list(self._partitions.items()):
                if t == topic and (partition is None or p == partition):
                    self._commit_one(t, p, o)
                    self._partitions[(t, p)] = None
        return self.assignment()

    def assignment(self):
        """The (topic, partition) pairs this consumer reads."""
        if self.group_id is not None and self._topics:
            return list(self._assignment)
        return sorted(self._partitions)

    def _join(self):
        request = {"type": "join_group", "group": self.group_id, "topics": list(self._topics)}
        if self.member_id is not None:
            request["member_id"] = self.member_id
        if self.session_timeout_ms is not None:
            request["session_timeout_ms"] = int(self.session_timeout_ms)
        self._remember(self._conn.request(request))

    def _remember(self, response):
        self.member_id = response["member_id"]
        self.generation = response["generation"]
        self._assignment = [(a["topic"], a["partition"]) for a in response["assignment"]]

    # -- reading ----------------------------------------------------------------------------

    def poll(self, timeout=1.0, max_messages=MAX_MESSAGES_DEFAULT):
        """Returns the next messages (a list of dicts with ``topic``, ``partition``, ``offset``,
        ``value``, ``key``, ``headers``, ``timestamp``), waiting up to ``timeout`` seconds
        when there are none yet. An empty list means nothing arrived in time."""
        if self.group_id is not None and self._topics:
            return self._poll_group(timeout, max_messages)
        if not self._partitions:
            raise StromError("not_subscribed", "subscribe() to a topic before poll()")
        return self._poll_partitions(timeout, max_messages)

    def _poll_group(self, timeout, max_messages):
        request = {"type": "consume", "group": self.group_id, "member_id": self.member_id,
                   "max_messages": max_messages, "wait_ms": _wait_ms(timeout)}
        try:
            response = self._conn.request(request, timeout=self._request_timeout(timeout))
        except StromError as e:
            if e.code != "unknown_member":
                raise
            # The session ended (the broker restarted, or we did not poll in time): join again,
            # as the same member if the group still knows it, and read with the new assignment.
            self._join()
            request["member_id"] = self.member_id
            response = self._conn.request(request, timeout=self._request_timeout(timeout))
        self._remember(response)
        return [message(m) for m in response["messages"]]

    def _poll_partitions(self, timeout, max_messages):
        deadline = time.monotonic() + max(0.0, timeout)
        keys = sorted(self._partitions)
        out = []
        while True:
            for i in range(len(keys)):
                topic, partition = keys[(self._next + i) % len(keys)]
                got = self._consume(topic, partition, max_messages - len(out), 0)
                out.extend(got)
                if len(out) >= max_messages:
                    break
            self._next = (self._next + 1) % len(keys)
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            # Nothing yet: wait on one partition at a time, briefly, round-robin.
            topic, partition = keys[self._next]
            wait = left if len(keys) == 1 else min(left, _PARTITION_WAIT_S)
            out.extend(self._consume(topic, partition, max_messages, _wait_ms(wait)))
            if out:
                return out

    def _consume(self, topic, partition, max_messages, wait_ms):
        request = {"type": "consume", "topic": topic, "partition": partition,
                   "consumer_id": self.consumer_id, "max_messages": max_messages,
                   "wait_ms": wait_ms}
        position = self._partitions.get((topic, partition))
        if position is not None:
            request["offset"] = position
        if not self.auto_commit:
            request["auto_commit"] = False
        response = self._conn.request(request, timeout=self._request_timeout(wait_ms / 1000))
        if not self.auto_commit or position is not None:
            self._partitions[(topic, partition)] = response["next_offset"] if not self.auto_commit else None
        messages = []
        for m in response["messages"]:
            msg = message(m)
            msg["topic"], msg["partition"] = topic, partition
            messages.append(msg)
        return messages

    # -- positions --------------------------------------------------------------------------

    def commit(self):
        """Stores the positions reached by :meth:`poll`. Polls already commit unless the
        consumer was made with ``auto_commit=False`` (group members always commit as they
        poll), so this only has work to do then."""
        if self.auto_commit:
            return
        for (topic, partition), position in self._partitions.items():
            if position is not None:
                self._commit_one(topic, partition, position)

    def _commit_one(self, topic, partition, offset):
        self._conn.request({"type": "commit", "topic": topic, "partition": partition,
                            "consumer_id": self.consumer_id, "offset": offset})

    def committed(self, topic):
        """The committed offsets of this consumer's group (or consumer id) in ``topic``, as
        ``{partition: offset}``."""
        group = self.group_id if self.group_id is not None else f"json:{self.consumer_id}"
        response = self._conn.request({"type": "committed", "group": group, "topic": topic})
        return {o["partition"]: o["offset"] for o in response["offsets"]}

    def heartbeat(self):
        """Tells the broker this group member is alive without reading (for long work between
        polls); returns the current assignment."""
        if self.member_id is None:
            raise StromError("not_subscribed", "heartbeat() is for group members")
        try:
            self._remember(self._conn.request(
                {"type": "heartbeat", "group": self.group_id, "member_id": self.member_id}))
        except StromError as e:
            if e.code != "unknown_member":
                raise
            self._join()
        return self.assignment()

    def _request_timeout(self, wait_s):
        # The broker answers a consume after its wait; a group poll may also wait for a
        # rebalance (at most about two session timeouts).
        session_s = (self.session_timeout_ms or 10_000) / 1000
        return max(self._conn.timeout, wait_s + 2 * session_s + 5)


def _wait_ms(seconds):
    return max(0, min(_WAIT_MS_MAX, int(round((seconds or 0) * 1000))))
