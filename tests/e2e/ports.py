"""Free TCP ports on loopback for the servers a test starts."""
import socket

_given = set()


def free_port(host="127.0.0.1"):
    """A TCP port on `host` that nothing is bound to now, and that no
    earlier call in this run returned. A test picks the ports of several
    servers before any of them binds its own, and the kernel may hand the
    same free port out twice meanwhile: the second server would then fail
    to start while a check of the port found the first one listening."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _given:
            _given.add(port)
            return port
