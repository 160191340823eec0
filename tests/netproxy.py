"""A fault-injecting TCP proxy for one direction of an inter-node link (127.0.0.1 only).

`LinkProxy(target_port)` listens on a free port and forwards each connection to the target.
`block()` cuts every open connection and refuses new ones (accepted, then closed at once),
so the link behaves like a network partition; `heal()` lets connections through again.
"""

import socket
import threading


class LinkProxy:
    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.port = self.listener.getsockname()[1]
        self.blocked = False
        self.closed = False
        self.lock = threading.Lock()
        self.conns = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=1)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns.add(client)
                self.conns.add(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data or self.blocked:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            self._drop(s)

    def _drop(self, s):
        with self.lock:
            self.conns.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def block(self):
        self.blocked = True
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            self._drop(s)

    def heal(self):
        self.blocked = False

    def close(self):
        self.closed = True
        self.block()
        self.listener.close()
