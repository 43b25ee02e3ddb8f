"""A real TCP proxy in front of PostgreSQL, for network faults at chosen points of a commit.

The mount connects to PostgreSQL through `FaultProxy` (127.0.0.1, its own
port). Armed with a `Cut`, the proxy breaks the next commit that passes:

- `BEFORE_BEGIN`: the packet carrying BEGIN is dropped and the connection closed;
- `MID_STATEMENTS`: half of that packet is forwarded, then the connection closed;
- `AFTER_COMMIT`: the packet carrying COMMIT reaches the server; its answer
  never reaches the client, whose connection is closed;
- `PARTITION`: like AFTER_COMMIT, but nothing is closed: every byte in both
  directions, on every connection (new ones too), is held back for
  `seconds`, then delivered (a partition that heals).

One thread serves every connection with `selectors`; nothing here is mocked:
the mount, psycopg and PostgreSQL see real sockets.
"""

from __future__ import annotations

import contextlib
import enum
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field


class Cut(enum.Enum):
    BEFORE_BEGIN = "before BEGIN"
    MID_STATEMENTS = "in the middle of the statements"
    AFTER_COMMIT = "after COMMIT was sent"
    PARTITION = "a partition after COMMIT was sent"


@dataclass
class _Pair:
    client: socket.socket
    server: socket.socket
    held: dict[socket.socket, list[bytes]] = field(default_factory=dict)
    exchanges: int = 0
    """Times the client spoke after the server did (or first): its round trips."""
    client_spoke_last: bool = False
    mute_replies: bool = False


class FaultProxy:
    """127.0.0.1:`port` -> 127.0.0.1:`target` (module docstring)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._pairs: dict[socket.socket, _Pair] = {}
        self._every_pair: list[_Pair] = []
        self._lock = threading.Lock()
        self._armed: Cut | None = None
        self._partition_until = 0.0
        self._partition_seconds = 0.0
        self.fired: list[Cut] = []
        self._running = True
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self._thread.start()

    def dsn(self, base: str) -> str:
        """`base` (a libpq key=value DSN) pointed at this proxy."""
        kept = [p for p in base.split() if not p.startswith(("host=", "port="))]
        return " ".join(["host=127.0.0.1", f"port={self.port}", *kept])

    def arm(self, cut: Cut, *, seconds: float = 0.0) -> None:
        """Break the next commit that passes (once)."""
        with self._lock:
            self._armed = cut
            self._partition_seconds = seconds

    @property
    def partitioned(self) -> bool:
        return time.monotonic() < self._partition_until

    def round_trips(self) -> int:
        """Round trips of every connection so far (closed ones included)."""
        return sum(p.exchanges for p in list(self._every_pair))

    def close(self) -> None:
        self._running = False
        self._thread.join(5)
        for pair in list(self._pairs.values()):
            self._drop(pair)
        self._listener.close()
        self._selector.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the loop

    def _serve(self) -> None:
        while self._running:
            for key, _ in self._selector.select(timeout=0.05):
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._pump(key.fileobj)  # type: ignore[arg-type]
            if not self.partitioned:
                self._release_held()

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        server = socket.create_connection(("127.0.0.1", self.target_port))
        pair = _Pair(client, server)
        self._every_pair.append(pair)
        for sock in (client, server):
            sock.setblocking(True)
            self._pairs[sock] = pair
            self._selector.register(sock, selectors.EVENT_READ, None)

    def _pump(self, sock: socket.socket) -> None:
        pair = self._pairs.get(sock)
        if pair is None:
            return
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self._drop(pair)
            return
        from_client = sock is pair.client
        target = pair.server if from_client else pair.client
        if from_client and not pair.client_spoke_last:
            pair.exchanges += 1
        pair.client_spoke_last = from_client
        if from_client:
            data = self._client_bytes(pair, data)
            if data is None:
                return
        elif pair.mute_replies:
            self._drop(pair)
            return
        if self.partitioned:
            pair.held.setdefault(target, []).append(data)
            return
        try:
            target.sendall(data)
        except OSError:
            self._drop(pair)

    def _client_bytes(self, pair: _Pair, data: bytes) -> bytes | None:
        """What of a client packet goes on (None: the connection was cut)."""
        with self._lock:
            cut = self._armed
            if cut is None:
                return data
            if cut in (Cut.BEFORE_BEGIN, Cut.MID_STATEMENTS) and b"BEGIN" in data:
                self._armed = None
                self.fired.append(cut)
                if cut is Cut.MID_STATEMENTS:
                    pair.server.sendall(data[: len(data) // 2])
                self._drop(pair)
                return None
            if cut in (Cut.AFTER_COMMIT, Cut.PARTITION) and b"COMMIT" in data:
                self._armed = None
                self.fired.append(cut)
                if cut is Cut.AFTER_COMMIT:
                    pair.mute_replies = True
                else:
                    pair.server.sendall(data)  # the server gets COMMIT; then silence
                    self._partition_until = time.monotonic() + self._partition_seconds
                    return b""
        return data

    def _release_held(self) -> None:
        for pair in {id(p): p for p in self._pairs.values()}.values():
            for target, chunks in list(pair.held.items()):
                for chunk in chunks:
                    try:
                        target.sendall(chunk)
                    except OSError:
                        break
                pair.held.pop(target, None)

    def _drop(self, pair: _Pair) -> None:
        for sock in (pair.client, pair.server):
            if self._pairs.pop(sock, None) is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(sock)
            with contextlib.suppress(OSError):
                sock.close()
