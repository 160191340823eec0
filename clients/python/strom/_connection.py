"""One TCP connection speaking Strom's JSON protocol: one JSON object per line each way, the
responses in the order of the requests (see docs/json-protocol.md in the Strom repository).

The connection reconnects by itself: before each request it checks whether the broker closed
the socket (e.g. it was restarted) and, if so, connects again, retrying for up to
``reconnect_timeout`` seconds while the broker comes back. A request whose answer is lost
with the connection is sent again only when that is safe (every request but ``produce``);
a lost ``produce`` raises :class:`StromConnectionError`, since it may or may not have been
written.
"""

import json
import os
import select
import socket
import time

from .errors import StromConnectionError, StromError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092
#: Environment variable with the broker's address (``host:port``) when none is given.
ADDR_ENV = "STROM_JSON_ADDR"
#: Longest response line accepted (the broker's own request limit is 1 MiB; a consume of
#: 10,000 messages can be larger, so allow much more, but not without bound).
MAX_RESPONSE_BYTES = 256 * 1024 * 1024
#: How many ``not_leader`` answers a request follows to another node of a cluster.
MAX_REDIRECTS = 3
#: How long a group request keeps asking while the group's coordinator is chosen or moves.
COORDINATOR_WAIT_S = 15.0
#: How long a connection to another node of a cluster (one a request was sent on to) tries
#: to reconnect before the request goes back to the node it started at.
PEER_RECONNECT_S = 2.0
#: Requests that may be sent again after the connection dropped before the answer came.
_RETRY_SAFE = frozenset(
    ["create_topic", "list_topics", "describe_topic", "consume", "commit", "position",
     "join_group", "heartbeat", "leave_group", "committed"]
)


def resolve_address(host=None, port=None):
    """host/port arguments win, then ``STROM_JSON_ADDR``, then 127.0.0.1:9092."""
    env_host, env_port = DEFAULT_HOST, DEFAULT_PORT
    env = os.environ.get(ADDR_ENV)
    if env:
        h, sep, p = env.rpartition(":")
        if not sep or not p.isdigit():
            raise ValueError(f"{ADDR_ENV} must be host:port, not {env!r}")
        env_host, env_port = h or DEFAULT_HOST, int(p)
    return (host if host is not None else env_host, int(port) if port is not None else env_port)


def _split_address(address):
    host, _, port = address.rpartition(":")
    return host, int(port)


class Connection:
    def __init__(self, host=None, port=None, timeout=60.0, reconnect_timeout=15.0):
        self.host, self.port = resolve_address(host, port)
        self.timeout = timeout
        self.reconnect_timeout = reconnect_timeout
        self._sock = None
        self._buf = b""
        self._peers = {}
        # Group id -> the connection to its coordinator (cluster mode).
        self._coordinators = {}

    @property
    def connected(self):
        return self._sock is not None

    def connect(self):
        """Connects now (retrying up to ``reconnect_timeout`` while the broker starts)."""
        self.close()
        deadline = time.monotonic() + self.reconnect_timeout
        delay = 0.05
        while True:
            try:
                sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
                break
            except OSError as e:
                if time.monotonic() >= deadline:
                    raise StromConnectionError(
                        f"cannot connect to Strom at {self.host}:{self.port}: {e}") from e
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._buf = b""

    def close(self):
        for peer in self._peers.values():
            peer.close()
        self._peers.clear()
        self._coordinators.clear()
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._buf = b""

    def request(self, payload, timeout=None):
        """Sends one request (a dict with ``type``) and returns the response dict; raises
        :class:`StromError` for an ``"ok": false`` answer.

        In a Strom cluster a node that does not lead the partition answers ``not_leader``
        with the leader's address; the request then goes there (over a connection kept for
        it), with the partition the node chose, up to ``MAX_REDIRECTS`` times. A group
        request answered ``not_coordinator`` goes to the group's coordinator, which later
        requests of the group go to first; while the group has no coordinator the request
        is asked again for up to ``COORDINATOR_WAIT_S``. When a node it was sent on to is
        gone, a request that is safe to repeat is asked again where it started."""
        group = payload.get("group")
        conn = self._coordinators.get(group, self) if group else self
        conn, response = self._send_via(conn, payload, timeout)
        redirects = 0
        deadline = time.monotonic() + COORDINATOR_WAIT_S
        while not response.get("ok"):
            code = response.get("code")
            if code == "not_leader" and redirects < MAX_REDIRECTS:
                leader = response.get("leader")
                if not leader or not leader.get("address"):
                    break
                redirects += 1
                payload = dict(payload, partition=leader["partition"])
                conn = self._peer(leader["address"])
            elif code == "not_coordinator" and group and time.monotonic() < deadline:
                where = response.get("coordinator")
                if where and where.get("address"):
                    conn = self._coordinators[group] = self._peer(where["address"])
                else:
                    time.sleep(0.1)
                    conn = self
            else:
                break
            conn, response = self._send_via(conn, payload, timeout)
        if not response.get("ok"):
            raise StromError(response.get("code", "unknown"), response.get("error", "request failed"))
        return response

    def _send_via(self, conn, payload, timeout):
        """Sends on `conn` (this connection or one to another node); if that node is gone and
        the request is safe to repeat, sends it here instead. Returns (connection, response)."""
        try:
            return conn, conn._send(payload, timeout)
        except StromConnectionError:
            if conn is self or payload.get("type") not in _RETRY_SAFE:
                raise
            self._coordinators.pop(payload.get("group"), None)
            return self, self._send(payload, timeout)

    def _peer(self, address):
        """The connection kept for another node of the cluster (``host:port``)."""
        if (self.host, self.port) == _split_address(address):
            return self
        peer = self._peers.get(address)
        if peer is None:
            host, port = _split_address(address)
            peer = self._peers[address] = Connection(
                host, port, self.timeout, min(self.reconnect_timeout, PEER_RECONNECT_S))
        return peer

    def _send(self, payload, timeout):
        """One request on this connection; returns the response dict, ok or not."""
        line = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
        if self._sock is None or self._peer_closed():
            self.connect()
        try:
            response = self._round_trip(line, timeout)
        except (OSError, StromConnectionError) as first:
            self.close()
            if payload.get("type") not in _RETRY_SAFE:
                raise StromConnectionError(
                    f"connection to {self.host}:{self.port} lost during {payload.get('type')}; "
                    f"it may or may not have been applied: {first}") from first
            self.connect()
            response = self._round_trip(line, timeout)
        return response

    def _peer_closed(self):
        """True if the broker closed the connection since the last request (EOF or reset)."""
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
            if not readable:
                return False
            return self._sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _round_trip(self, line, timeout):
        self._sock.settimeout(self.timeout if timeout is None else timeout)
        self._sock.sendall(line)
        while b"\n" not in self._buf:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise StromConnectionError(f"Strom at {self.host}:{self.port} closed the connection")
            self._buf += chunk
            if len(self._buf) > MAX_RESPONSE_BYTES:
                raise StromConnectionError("response line too long")
        raw, _, self._buf = self._buf.partition(b"\n")
        try:
            return json.loads(raw)
        except ValueError as e:
            raise StromConnectionError(f"malformed response from Strom: {e}") from e
