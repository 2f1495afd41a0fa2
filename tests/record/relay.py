"""A lab guest's command channel lent to another process, so that a
``record`` can run in a process the test SIGKILLs while the guest (owned by
the test) lives on: the test serves ``Guest.run`` on a UNIX socket
(:class:`RelayServer`); the recorder process talks to it through
:class:`RelayHost`, which has what ``record`` needs of a host (``run``,
``tracefs``, ``alive``). Run as a script, it is that recorder:
``python relay.py SOCKET QMP_SOCKET VMLINUX`` records the guest with a
workload that never ends, after printing ``recording`` once tracing is on."""

from __future__ import annotations

import base64
import json
import socket
import socketserver
import sys
import threading


class RelayServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str, guest):
        self.guest = guest

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                for line in self.rfile:
                    req = json.loads(line)
                    r = guest.run(req["script"], timeout=req["timeout"])
                    self.wfile.write((json.dumps({
                        "status": r.status,
                        "stdout": base64.b64encode(r.stdout).decode(),
                        "stderr": base64.b64encode(r.stderr).decode()}) + "\n").encode())
                    self.wfile.flush()

        super().__init__(path, Handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class RelayHost:
    alive = True
    tracefs = "/sys/kernel/tracing"

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.f = self.sock.makefile("rwb")

    def run(self, script: str, timeout: float = 60.0, check: bool = False):
        from buddyscope.errors import BuddyscopeError
        from buddyscope.lab.guest import CommandResult

        self.f.write((json.dumps({"script": script, "timeout": timeout}) + "\n").encode())
        self.f.flush()
        d = json.loads(self.f.readline())
        r = CommandResult(d["status"], base64.b64decode(d["stdout"]), base64.b64decode(d["stderr"]))
        if check and r.status != 0:
            raise BuddyscopeError(f"relayed command failed ({r.status}): {script.splitlines()[0]}")
        return r


def _recorder(relay: str, qmp: str, vmlinux: str) -> None:
    import contextlib
    import time
    from pathlib import Path

    from buddyscope.lab import record
    from buddyscope.probe.sources import SourceSpec, open_source

    host = RelayHost(relay)

    def run_workload():
        print("recording", flush=True)
        time.sleep(3600)

    with open_source(SourceSpec(qmp=Path(qmp), vmlinux=Path(vmlinux))) as src:
        record._record(host, src, contextlib.nullcontext, run_workload, buffer_kb=1024, timeout=60)


if __name__ == "__main__":
    _recorder(*sys.argv[1:4])
