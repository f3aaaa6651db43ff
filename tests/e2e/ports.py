"""Free TCP ports on loopback for the servers a test starts."""
import atexit
import os
import socket
import tempfile

_given = set()
# Ports claimed by the test processes running now (ctest runs several at
# once): a file per port, holding the claiming process's id.
_CLAIMS = os.path.join(tempfile.gettempdir(), "petrel-e2e-ports")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim(port, retry=True):
    """True once this process holds `port`; False while another living
    test process does."""
    os.makedirs(_CLAIMS, exist_ok=True)
    path = os.path.join(_CLAIMS, str(port))
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        try:
            with open(path) as f:
                owner = f.read().strip()
        except OSError:
            return False
        # Empty: its owner is writing it now.
        if not owner or not owner.isdigit() or _alive(int(owner)) or not retry:
            return False
        try:
            os.unlink(path)  # its process has ended
        except OSError:
            pass
        return _claim(port, retry=False)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


@atexit.register
def _release():
    for port in _given:
        try:
            os.unlink(os.path.join(_CLAIMS, str(port)))
        except OSError:
            pass


def free_port(host="127.0.0.1"):
    """A TCP port on `host` that nothing is bound to now, that no earlier
    call in this run returned, and that no other test process running now
    holds.

    A test picks the ports of several servers before any of them binds its
    own, and the kernel may hand the same free port out twice meanwhile:
    the second server would then fail to start while a check of the port
    found the first one listening. And a test that stops a server and
    starts it again on its port leaves that port free for a while: a test
    in another process must not pick it then, or the first test's nodes,
    reconnecting, reach the second test's server."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _given and _claim(port):
            _given.add(port)
            return port
