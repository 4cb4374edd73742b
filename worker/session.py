"""One Dispatcher.Session stream to a manager, and the reconnect backoff.

A Session owns the gRPC call: an outgoing queue feeding the request stream (the first
message is the hello) and a reader thread that turns every ManagerMessage -- and the
end of the stream -- into a SessionEvent posted to the agent's inbox. It makes no
decisions; the agent's loop does.

Leader redirect: a manager that refuses the session may name the leader in trailing
metadata `swarmlet-leader: host:port`; the agent then tries that address next.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from swarmlet.api import swarmlet_pb2 as pb
from swarmlet.api import swarmlet_pb2_grpc as pb_grpc

LEADER_METADATA_KEY = "swarmlet-leader"


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """From a session's reader thread: a message, or (msg None) the end of the stream."""

    gen: int
    msg: pb.ManagerMessage | None
    error: str = ""
    leader: str = ""


class Backoff:
    """Exponential backoff: initial, x factor each failure, capped; jitter only shortens."""

    def __init__(
        self,
        initial: float = 0.1,
        maximum: float = 8.0,
        factor: float = 2.0,
        jitter: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.initial, self.maximum, self.factor, self.jitter = initial, maximum, factor, jitter
        self._rng = rng or random.Random()
        self._cur = initial

    def next(self) -> float:
        """The delay before the next attempt (grows for the one after)."""
        d = self._cur
        self._cur = min(self.maximum, self._cur * self.factor)
        return d * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        self._cur = self.initial


class Session:
    """A live Dispatcher.Session call. send() from any thread; close() is idempotent."""

    def __init__(
        self,
        gen: int,
        addr: str,
        channel: grpc.Channel,
        hello: pb.Hello,
        post: Callable[[SessionEvent], None],
    ) -> None:
        self.gen = gen
        self.addr = addr
        self._channel = channel
        self._post = post
        self._out: queue.SimpleQueue[pb.WorkerMessage | None] = queue.SimpleQueue()
        self._out.put(pb.WorkerMessage(hello=hello))
        self._closed = False
        stub = pb_grpc.DispatcherStub(channel)
        self._call = stub.Session(self._requests())
        self._reader = threading.Thread(
            target=self._read, name=f"agent-session-{gen}", daemon=True
        )
        self._reader.start()

    def send(self, msg: pb.WorkerMessage) -> None:
        if not self._closed:
            self._out.put(msg)

    def close(self, drain_s: float = 0.0) -> None:
        """End the call. With drain_s > 0, end the request stream first and give the
        manager up to that long to read what was queued and finish the call (a cancel
        would discard messages it has received but not yet read)."""
        if self._closed:
            return
        self._closed = True
        self._out.put(None)
        if drain_s > 0 and threading.current_thread() is not self._reader:
            self._reader.join(drain_s)
        self._call.cancel()
        self._channel.close()

    def _requests(self) -> Iterator[pb.WorkerMessage]:
        while True:
            msg = self._out.get()
            if msg is None:
                return
            yield msg

    def _read(self) -> None:
        try:
            for msg in self._call:
                self._post(SessionEvent(self.gen, msg))
            self._post(SessionEvent(self.gen, None, "stream ended by the manager"))
        except grpc.RpcError as e:
            self._post(SessionEvent(self.gen, None, _describe(e), _leader_hint(e)))
        except Exception as e:  # noqa: BLE001 (the reader must always report the end)
            self._post(SessionEvent(self.gen, None, f"session reader failed: {e}"))
        finally:
            self._out.put(None)


def _describe(e: grpc.RpcError) -> str:
    code = getattr(e, "code", None)
    details = getattr(e, "details", None)
    name = code().name if callable(code) else "UNKNOWN"
    return f"{name}: {details() if callable(details) else e}"


def _leader_hint(e: grpc.RpcError) -> str:
    md = getattr(e, "trailing_metadata", None)
    try:
        items = md() if callable(md) else None
    except Exception:  # noqa: BLE001
        return ""
    for key, value in items or ():
        if key == LEADER_METADATA_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""
