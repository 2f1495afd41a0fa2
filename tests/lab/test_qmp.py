"""QMP framing against a scripted peer: greeting, capabilities, events in
between, replies split across writes, errors, and peers that are not QMP."""

import json
import socket
import threading

import pytest

from buddyscope.errors import GuestGone, QMPError
from buddyscope.probe.qmp import QMP

GREETING = {"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}}


class Peer(threading.Thread):
    """Accepts one connection on a Unix socket and plays *script(conn, recv)*."""

    def __init__(self, path, script):
        super().__init__(daemon=True)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(1)
        self.script = script
        self.received = []
        self.start()

    def run(self):
        conn, _ = self.srv.accept()
        buf = b""

        def recv():
            nonlocal buf
            while b"\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk:
                    return None
                buf += chunk
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            self.received.append(msg)
            return msg

        try:
            self.script(conn, recv)
        finally:
            conn.close()
            self.srv.close()


def send(conn, obj):
    conn.sendall(json.dumps(obj).encode() + b"\r\n")


def test_handshake_events_and_split_replies(tmp_path):
    def script(conn, recv):
        send(conn, GREETING)
        msg = recv()
        send(conn, {"return": {}, "id": msg["id"]})
        msg = recv()
        assert msg["execute"] == "query-status"
        # An event first, then the reply in three pieces.
        send(conn, {"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}})
        raw = json.dumps({"return": {"status": "paused", "running": False}, "id": msg["id"]}).encode()
        for piece in (raw[:5], raw[5:20], raw[20:] + b"\n"):
            conn.sendall(piece)
        msg = recv()
        send(conn, {"error": {"class": "GenericError", "desc": "no such thing"}, "id": msg["id"]})
        recv()

    path = tmp_path / "q.sock"
    peer = Peer(path, script)
    with QMP(str(path), timeout=5) as q:
        assert q.greeting["version"]["qemu"]["major"] == 7
        assert q.status() == "paused"
        assert [e["event"] for e in q.events] == ["STOP"]
        with pytest.raises(QMPError, match="QMP frobnicate: no such thing"):
            q.execute("frobnicate", {"x": 1})
    peer.join(5)
    assert [m["execute"] for m in peer.received] == ["qmp_capabilities", "query-status", "frobnicate"]
    assert peer.received[2]["arguments"] == {"x": 1}
    # Every command carries a distinct id.
    assert len({m["id"] for m in peer.received}) == 3


def test_peer_that_is_not_qmp(tmp_path):
    def script(conn, recv):
        conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

    path = tmp_path / "q.sock"
    Peer(path, script)
    with pytest.raises(QMPError, match="is not a QMP socket"):
        QMP(str(path), timeout=5)


def test_peer_with_json_but_no_greeting(tmp_path):
    path = tmp_path / "q.sock"
    Peer(path, lambda conn, recv: send(conn, {"hello": 1}))
    with pytest.raises(QMPError, match="no QMP greeting"):
        QMP(str(path), timeout=5)


def test_silent_peer_times_out(tmp_path):
    done = threading.Event()
    path = tmp_path / "q.sock"
    Peer(path, lambda conn, recv: done.wait(5))
    with pytest.raises(QMPError, match="no answer"):
        QMP(str(path), timeout=0.3)
    done.set()


def test_peer_gone_mid_command(tmp_path):
    def script(conn, recv):
        send(conn, GREETING)
        msg = recv()
        send(conn, {"return": {}, "id": msg["id"]})
        recv()  # then hang up without answering

    path = tmp_path / "q.sock"
    Peer(path, script)
    q = QMP(str(path), timeout=5)
    with pytest.raises(GuestGone, match="closed the connection"):
        q.execute("stop")


def test_no_socket_at_all(tmp_path):
    with pytest.raises(QMPError, match="cannot talk QMP"):
        QMP(str(tmp_path / "nothing.sock"), timeout=1)
