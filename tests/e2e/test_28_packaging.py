"""Packaging: the systemd unit, readiness notification, `cmake --install`,
the container image's Dockerfile, and the README's set-up commands.

No Docker daemon is assumed: the Dockerfile is checked (pinned Debian 12
bases, apt hygiene, non-root user, the store volume) and what it relies on
is checked against the real binary: the runtime packages it installs
provide every shared library the binary links.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import HOST, PETREL_BIN, free_port

pytestmark = pytest.mark.petrel_only

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT_IN = os.path.join(REPO, "packaging", "petrel.service.in")
DOCKERFILE = os.path.join(REPO, "packaging", "Dockerfile")
BUILD_DIR = os.path.dirname(os.path.abspath(PETREL_BIN))


def unit_for(tmp_path, bindir):
    etc = tmp_path / "etc"
    (etc / "petrel").mkdir(parents=True)
    shutil.copy(os.path.join(REPO, "config.yaml"), etc / "petrel" / "config.yaml")
    text = open(UNIT_IN).read()
    text = text.replace("@CMAKE_INSTALL_FULL_BINDIR@", bindir).replace("@CMAKE_INSTALL_FULL_SYSCONFDIR@", str(etc))
    assert not re.search(r"@[A-Z_]+@", text)
    path = tmp_path / "petrel.service"
    path.write_text(text)
    return path


def test_systemd_unit_verifies_cleanly(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    unit = unit_for(tmp_path, BUILD_DIR)
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "" and r.stdout.strip() == "", r.stdout + r.stderr
    text = unit.read_text()
    for line in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "StateDirectory=petrel",
                 "NoNewPrivileges=yes", "ProtectSystem=strict"):
        assert line in text
    # The hardening as systemd rates it (lower is better; 10 = none).
    r = subprocess.run([analyze, "security", "--offline=yes", str(unit)], capture_output=True, text=True,
                       timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
    assert m and float(m.group(1)) <= 2.0, r.stdout[-500:]


def test_a_broken_unit_is_caught(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze is not installed")
    unit = unit_for(tmp_path, "/nonexistent")
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "not executable" in r.stderr


def test_ready_reloading_stopping_are_notified(tmp_path):
    """Type=notify: READY=1 once listening, RELOADING=1/READY=1 around a
    SIGHUP reload, STOPPING=1 on SIGTERM, on the $NOTIFY_SOCKET datagram
    socket (here an abstract one, as systemd may use)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = "\0petrel-notify-%d" % os.getpid()
    sock.bind(name)
    sock.settimeout(10)
    port = free_port()
    conf = tmp_path / "c.yaml"
    conf.write_text("listeners:\n  - {address: %s, port: %d}\npersistence: {dir: %s}\n"
                    % (HOST, port, tmp_path / "data"))
    env = dict(os.environ, NOTIFY_SOCKET="@" + name[1:])
    p = subprocess.Popen([PETREL_BIN, "--config", str(conf)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    try:
        assert sock.recv(256) == b"READY=1"
        with socket.create_connection((HOST, port), timeout=2):
            pass  # listening when it said so
        p.send_signal(signal.SIGHUP)
        assert sock.recv(256) == b"RELOADING=1"
        assert sock.recv(256) == b"READY=1"
        p.send_signal(signal.SIGTERM)
        assert sock.recv(256) == b"STOPPING=1"
        assert p.wait(10) == 0
    finally:
        if p.poll() is None:
            p.kill()
        sock.close()


def test_cmake_install_places_binary_config_and_unit(tmp_path):
    cmake = shutil.which("cmake")
    cache = os.path.join(BUILD_DIR, "CMakeCache.txt")
    if not cmake or not os.path.exists(cache):
        pytest.skip("no CMake build directory next to the binary")
    prefix = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", open(cache).read(), re.M).group(1)
    dest = tmp_path / "root"

    def install():
        return subprocess.run([cmake, "--install", BUILD_DIR], env=dict(os.environ, DESTDIR=str(dest)),
                              capture_output=True, text=True, timeout=120)
    r = install()
    assert r.returncode == 0, r.stdout + r.stderr
    units = list(dest.rglob("petrel.service"))
    assert len(units) == 1, r.stdout
    text = units[0].read_text()
    # The unit names the installed binary and configuration.
    m = re.search(r"^ExecStart=(\S+) --config (\S+)$", text, re.M)
    binary, config = dest / m.group(1).lstrip("/"), dest / m.group(2).lstrip("/")
    assert m.group(1).startswith(prefix), m.group(1)
    assert os.access(binary, os.X_OK) and config.exists(), r.stdout
    assert str(units[0]).startswith(str(dest / prefix.lstrip("/")))
    assert subprocess.run([str(binary), "--check-config", "--config", str(config)],
                          capture_output=True, timeout=10).returncode == 0
    # A configuration already there is kept.
    config.write_text("log_level: debug\n")
    r = install()
    assert r.returncode == 0 and config.read_text() == "log_level: debug\n"
    assert "Keeping" in r.stdout


def dockerfile_stages():
    stages = []
    for line in open(DOCKERFILE).read().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word == "FROM":
            stages.append({"from": rest, "steps": []})
        else:
            stages[-1]["steps"].append((word, rest))
    return stages


def test_dockerfile_is_sound():
    stages = dockerfile_stages()
    assert len(stages) == 2
    for st in stages:
        # Debian 12, pinned by release, never "latest".
        assert re.match(r"debian:12(-slim)?( AS \w+)?$", st["from"]), st["from"]
        for word, rest in st["steps"]:
            if word == "RUN" and "apt-get install" in rest:
                assert "--no-install-recommends" in rest and "apt-get update" in rest
                assert "rm -rf /var/lib/apt/lists/*" in rest
    build, runtime = stages
    # The build stage installs the README's build packages.
    readme = open(os.path.join(REPO, "README.md")).read()
    start_cmd = re.findall(r"```sh\n(.*?)\n```", readme, re.S)[0]
    wanted = set(re.search(r"apt-get install -y (.*?) &&", start_cmd).group(1).split())
    build_apt = " ".join(rest for word, rest in build["steps"] if word == "RUN" and "apt-get install" in rest)
    assert wanted <= set(build_apt.split()), wanted - set(build_apt.split())
    words = [w for w, _ in runtime["steps"]]
    steps = dict(runtime["steps"])
    assert steps.get("USER") == "petrel"  # not root
    assert "/var/lib/petrel" in steps.get("VOLUME", "")
    assert steps.get("EXPOSE") == "1883"
    assert words.index("USER") < words.index("ENTRYPOINT")
    # The container configuration is valid (with the password file it names
    # mounted; --check-config loads it) and not open to anonymous clients.
    text = open(os.path.join(REPO, "packaging", "container.yaml")).read()
    assert "allow_anonymous: false" in text and "password_file: /etc/petrel/passwd" in text
    work = tempfile.mkdtemp()
    try:
        pw = os.path.join(work, "passwd")
        r = subprocess.run([PETREL_BIN, "passwd", "-c", "-b", pw, "alice", "secret"], capture_output=True, timeout=20)
        assert r.returncode == 0
        conf = os.path.join(work, "container.yaml")
        with open(conf, "w") as f:
            f.write(text.replace("/etc/petrel/passwd", pw))
        r = subprocess.run([PETREL_BIN, "--check-config", "--config", conf], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_runtime_image_packages_provide_every_library():
    """The runtime stage's packages provide each shared library the binary
    needs (the image would not start otherwise)."""
    if not shutil.which("ldd") or not shutil.which("dpkg"):
        pytest.skip("ldd/dpkg missing")
    runtime = dockerfile_stages()[1]
    apt = " ".join(rest for word, rest in runtime["steps"] if word == "RUN" and "apt-get install" in rest)
    packages = set(re.search(r"--no-install-recommends (.*?) &&", apt).group(1).split())
    # The C/C++ runtime comes with the base image.
    base = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}
    out = subprocess.run(["ldd", PETREL_BIN], capture_output=True, text=True, timeout=10).stdout
    missing = []
    for lib in re.findall(r"=> (/\S+)", out):
        if "libasan" in lib or "libubsan" in lib:
            continue  # a sanitizer build
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(lib)], capture_output=True, text=True)
        if owner.returncode != 0:
            owner = subprocess.run(["dpkg", "-S", lib], capture_output=True, text=True)
        pkg = owner.stdout.split(":")[0]
        if pkg not in packages | base:
            missing.append((lib, pkg))
    assert not missing, missing
