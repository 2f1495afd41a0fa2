"""Run the buddyscope CLI with a real signal sent to itself at one phase of
``record --lab``, for test_faults_lab.py::

    python faultinject.py PHASE SIGNAL PIDFILE -- record --lab 6.1 ...

The phase's function is wrapped (here, never in buddyscope) so that the
process signals itself when the phase starts; the signal then lands in the
middle of that phase's work. The pid of every QEMU started is written to
PIDFILE, so that the test can check none outlived the run.
"""

import os
import signal
import subprocess
import sys
import threading


def main() -> int:
    phase, signame, pidfile, sep, *argv = sys.argv[1:]
    assert sep == "--"
    # Ctrl-C as at a terminal: a process started in the background by a
    # shell without job control inherits SIGINT ignored (and Python then
    # leaves it so), which is not the case tested here.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def fire():
        if signame.startswith("KILL"):
            # KILLQEMU: the guest dies under us (its QEMU killed); KILLPID=N:
            # process N (a guest the test booted) is killed.
            pids = ([int(signame.split("=")[1])] if "=" in signame
                    else [int(l) for l in open(pidfile)])
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
        else:
            os.kill(os.getpid(), getattr(signal, signame))

    real_popen = subprocess.Popen

    class Popen(real_popen):
        def __init__(self, args, *a, **k):
            super().__init__(args, *a, **k)
            if "qemu" in os.path.basename(str(args[0])):
                with open(pidfile, "a") as f:
                    f.write(f"{self.pid}\n")
                if phase == "boot":
                    # While QEMU boots the kernel: the guest has no shell yet.
                    threading.Timer(1.0, fire).start()

    subprocess.Popen = Popen

    from buddyscope.lab import guest, record
    from buddyscope.model import fixture
    from buddyscope.probe import sources

    def before(obj, name, when=lambda *a, **k: True):
        real = getattr(obj, name)

        def wrapped(*a, **k):
            if when(*a, **k):
                fire()
            return real(*a, **k)

        setattr(obj, name, wrapped)

    def cmd(prefix):
        return lambda self, script, *a, **k: script.startswith(prefix)

    if phase == "prepare":
        before(guest.Guest, "run", cmd("/run/workload prepare"))
    elif phase == "tracing":
        before(record, "_start_tracing")
    elif phase == "snapshot":
        # The guest is paused here: it must be resumed (or shut down).
        before(sources.QmpSource, "snapshot")
    elif phase == "run":
        before(guest.Guest, "run", cmd("/run/workload run"))
    elif phase == "readback":
        before(guest.Guest, "run", lambda self, script, *a, **k: "/per_cpu/cpu" in script)
    elif phase == "write":
        before(fixture.Fixture, "save")
    elif phase not in ("boot", "none"):
        raise SystemExit(f"unknown phase {phase}")

    from buddyscope.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
