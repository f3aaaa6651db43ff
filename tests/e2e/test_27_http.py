"""The operators' HTTP endpoint (config `http:`): /metrics in the Prometheus
text format (parsed strictly here), /healthz and /readyz, /api/v1/stats,
the status page, basic authentication, HTTPS, bad input; and mosquitto's
$SYS names next to Petrel's."""

import base64
import http.client
import json
import math
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time

import pytest

import mqttraw as m
from conftest import PETREL_BIN, free_port
from petrel_tls_helpers import CertAuthority

pytestmark = pytest.mark.petrel_only

HOST = "127.0.0.1"


def http_broker(make_broker, http=None, **overrides):
    cfg = {"enabled": True, "address": HOST, "port": free_port()}
    cfg.update(http or {})
    b = make_broker(http=cfg, **overrides)
    b.http_port = cfg["port"]
    return b


def get(b, path, headers=None, context=None, method="GET"):
    if context is None:
        c = http.client.HTTPConnection(HOST, b.http_port, timeout=5)
    else:
        c = http.client.HTTPSConnection(HOST, b.http_port, timeout=5, context=context)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


# --------------------------------------------------------------------------
# A strict reader of the text exposition format

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
LABEL = r"(%s)=(%s)" % (LABEL_NAME, LABEL_VALUE)
SAMPLE = re.compile(r"^(%s)(?:\{(%s(?:,%s)*)\})? (\S+)$" % (NAME, LABEL, LABEL))
FLOAT = re.compile(r"^[-+]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|Inf|NaN)$")
HELP = re.compile(r"^# HELP (%s) (?:[^\\\n]|\\\\|\\n)*$" % NAME)
TYPE = re.compile(r"^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$" % NAME)


def unescape(v):
    return re.sub(r'\\(.)', lambda mm: {"n": "\n", "\\": "\\", '"': '"'}[mm.group(1)], v[1:-1])


def parse_metrics(text):
    """{family: {"type": t, "samples": {(name, ((label, value), ...)): float}}};
    fails on any line that is not valid exposition format."""
    assert text.endswith("\n"), "the text ends with a line feed"
    families = {}
    current = None
    for line in text[:-1].split("\n"):
        mm = HELP.match(line)
        if mm:
            current = mm.group(1)
            assert current not in families, "family announced twice: " + line
            families[current] = {"type": None, "samples": {}}
            continue
        mm = TYPE.match(line)
        if mm:
            assert mm.group(1) == current, "TYPE without its HELP: " + line
            assert families[current]["type"] is None
            families[current]["type"] = mm.group(2)
            continue
        assert not line.startswith("#"), "unexpected comment: " + line
        mm = SAMPLE.match(line)
        assert mm, "not a sample line: %r" % line
        name, labels, value = mm.group(1), mm.group(2), mm.group(mm.lastindex)
        assert FLOAT.match(value), "not a float: %r" % line
        fam = families.get(current)
        assert fam is not None and fam["type"], "sample before HELP/TYPE: " + line
        if fam["type"] == "histogram":
            assert name in (current + "_bucket", current + "_sum", current + "_count"), line
        else:
            assert name == current, "sample outside its family: " + line
        if fam["type"] == "counter":
            assert name.endswith("_total"), "a counter's name ends in _total: " + line
        pairs = tuple(re.findall(LABEL, labels)) if labels else ()
        pairs = tuple((k, unescape(v)) for k, v in pairs)
        assert len({k for k, _ in pairs}) == len(pairs), "label twice: " + line
        key = (name, pairs)
        assert key not in fam["samples"], "series twice: " + line
        fam["samples"][key] = float(value)
    for name, fam in families.items():
        assert fam["type"], "family without TYPE: " + name
        if fam["type"] == "histogram":
            check_histogram(name, fam["samples"])
        if fam["type"] == "counter":
            assert all(v >= 0 for v in fam["samples"].values()), name
    return families


def check_histogram(name, samples):
    series = {}
    for (n, labels), v in samples.items():
        rest = tuple(p for p in labels if p[0] != "le")
        s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if n == name + "_bucket":
            le = dict(labels)["le"]
            s["buckets"].append((float(le), v))
        elif n == name + "_sum":
            s["sum"] = v
        else:
            s["count"] = v
    for s in series.values():
        b = s["buckets"]
        assert b, name + ": no buckets"
        assert [x for x, _ in b] == sorted(x for x, _ in b), name + ": buckets out of order"
        assert b[-1][0] == math.inf, name + ": the last bucket is +Inf"
        counts = [c for _, c in b]
        assert counts == sorted(counts), name + ": buckets are cumulative"
        assert s["count"] == b[-1][1], name + ": _count equals the +Inf bucket"
        assert s["sum"] is not None and s["sum"] >= 0, name + ": _sum"


def value(families, family, **labels):
    want = tuple(sorted(labels.items()))
    for (n, pairs), v in families[family]["samples"].items():
        if n == family and tuple(sorted(pairs)) == want:
            return v
    raise KeyError("%s%r" % (family, labels))


def scrape(b, **kw):
    status, headers, body = get(b, "/metrics", **kw)
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(body.decode("utf-8"))


def mosquitto_pub(b, topic, n, qos=1):
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(b.port), "-t", topic, "-m", "payload-0123456789",
                    "-q", str(qos), "--repeat", str(n)], check=True, timeout=10)


# --------------------------------------------------------------------------


def test_metrics_are_valid_exposition_and_counters_move(make_broker, tmp_path):
    b = http_broker(make_broker, persistence={"enabled": True, "sync": "periodic"})
    sub = b.connected("http-sub", clean=False)
    sub.subscribe([("jobs/#", 1)])
    worker = b.connected("http-worker", version=5)
    worker.subscribe([("$share/grp/work/#", 1)])
    before = scrape(b)
    for fam in ("petrel_messages_received_total", "petrel_messages_sent_total", "petrel_received_bytes_total",
                "petrel_store_commit_duration_seconds", "petrel_loop_lag_seconds", "petrel_clients_connected",
                "petrel_share_group_members", "petrel_retained_messages", "petrel_store_used_bytes",
                "petrel_delayed_pending_messages", "petrel_connections_refused_total", "petrel_queued_messages"):
        assert fam in before, fam
    assert value(before, "petrel_clients_connected") == 2
    assert value(before, "petrel_share_group_members", group="grp", filter="work/#") == 1
    assert before["petrel_store_commit_duration_seconds"]["type"] == "histogram"

    mosquitto_pub(b, "jobs/a", 20, qos=1)
    for _ in range(20):
        sub.recv_publish()
    mosquitto_pub(b, "work/x", 5, qos=1)
    for _ in range(5):
        worker.recv_publish()
    mosquitto_pub(b, "jobs/zero", 3, qos=0)
    for _ in range(3):
        sub.recv_publish()
    # A refused client counts too.
    bad = b.client(version=4)
    bad.send(m.connect("refused", level=9))
    bad.expect(m.CONNACK)
    after = scrape(b)

    def moved(family, **labels):
        return value(after, family, **labels) - value(before, family, **labels)
    assert moved("petrel_messages_received_total", qos="1") == 25
    assert moved("petrel_messages_received_total", qos="0") == 3
    assert moved("petrel_messages_sent_total", qos="1") >= 25
    assert moved("petrel_messages_sent_total", qos="0") >= 3
    assert moved("petrel_received_bytes_total") > 28 * 20
    assert moved("petrel_sent_bytes_total") > 28 * 20
    assert moved("petrel_connections_total") >= 3
    assert moved("petrel_connects_total") >= 3
    assert value(after, "petrel_share_group_delivered_total", group="grp", filter="work/#") == 5
    commits = after["petrel_store_commit_duration_seconds"]["samples"]
    assert commits[("petrel_store_commit_duration_seconds_count", ())] > 0
    assert value(after, "petrel_store_used_bytes") > 0
    assert value(after, "petrel_clients_connected_max") >= 3
    assert moved("petrel_connections_refused_total", reason="protocol") == 1


def test_thread_cpu_says_which_loop_is_busy(make_broker):
    # Two worker loops: the main loop, both workers and the store's writer
    # are reported by name, and traffic through the workers' sockets moves
    # their CPU time (rounds of 50,000 messages of 1 KB in, and out again:
    # the kernel counts a thread's time in ticks, and one round once took
    # less than a tick on the workers).
    import fastclient as fc
    b = http_broker(make_broker, workers=2, persistence={"enabled": True, "sync": "periodic"},
                    limits={"max_inflight": 1000, "max_queued_messages": 0})
    sub = fc.Sub(HOST, b.port, "cpu-sub", version=4).connect("cpu/#", 1)
    pub = fc.Pub(HOST, b.port, "cpu-pub").connect()
    before = scrape(b)
    threads = {dict(pairs)["thread"] for (n, pairs) in before["petrel_thread_cpu_seconds_total"]["samples"]}
    assert {"main", "petrel-io-1", "petrel-io-2", "petrel-store"} <= threads, threads
    assert before["petrel_thread_cpu_seconds_total"]["type"] == "counter"
    def cpu(families, thread):
        return value(families, "petrel_thread_cpu_seconds_total", thread=thread)
    n = 50_000
    for rounds in range(1, 6):
        pub.publish("cpu/a", n, qos=1, payload_size=1024)
        assert fc.run([sub], lambda: sub.unique() >= rounds * n, 60), sub.unique()
        after = scrape(b)
        io = sum(cpu(after, t) - cpu(before, t) for t in ("petrel-io-1", "petrel-io-2"))
        if io > 0:
            break
    assert io > 0, (io, rounds)
    assert cpu(after, "main") > cpu(before, "main")
    status, _, body = get(b, "/api/v1/stats")
    assert status == 200
    stats = json.loads(body)["thread_cpu_seconds"]
    assert set(stats) == threads | ({"other"} if "other" in stats else set()), stats
    assert stats["main"] >= cpu(after, "main")
    sub.close()
    pub.close()


def test_one_loop_has_no_worker_threads_to_report(make_broker):
    b = http_broker(make_broker, workers=1)
    threads = {dict(pairs)["thread"] for (n, pairs) in scrape(b)["petrel_thread_cpu_seconds_total"]["samples"]}
    assert "main" in threads and not any(t.startswith("petrel-io-") for t in threads), threads


def test_health_and_readiness(make_broker):
    b = http_broker(make_broker)
    assert get(b, "/healthz")[0::2] == (200, b"ok\n")
    assert get(b, "/readyz")[0::2] == (200, b"ready\n")
    status, headers, body = get(b, "/healthz", method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "3"
    assert get(b, "/nothing-here")[0] == 404
    assert get(b, "/metrics", method="POST")[0] == 405


def test_stats_json_and_the_status_page(make_broker):
    b = http_broker(make_broker, delayed={"enabled": True})
    worker = b.connected("stats-worker", version=5)
    worker.subscribe([("$share/team/tasks/#", 1)])
    pub = b.connected("stats-pub")
    deadline = time.monotonic() + 8
    stats = None
    # Traffic until the busiest topic shows up (the top-topics window is 3 s).
    while time.monotonic() < deadline:
        for _ in range(20):
            pub.publish("tasks/hot", b"x", qos=0)
        pub.publish("tasks/cold", b"x", qos=0)
        status, headers, body = get(b, "/api/v1/stats")
        assert status == 200 and headers["Content-Type"] == "application/json"
        stats = json.loads(body)
        if stats["top_topics"]:
            break
        time.sleep(0.25)
    for key in ("version", "uptime_seconds", "clients", "rates", "history", "messages", "top_topics",
                "share_groups", "store", "bridges", "delayed", "loop_lag_seconds", "thread_cpu_seconds"):
        assert key in stats, key
    assert stats["clients"]["connected"] == 2
    assert stats["top_topics"][0]["topic"] == "tasks/hot"
    assert stats["top_topics"][0]["per_second"] > 0
    assert stats["rates"]["received_per_second"] >= 0
    assert len(stats["history"]) >= 1
    assert stats["messages"]["received"] > 0
    assert stats["messages"]["queued_in_groups"] == 0
    group = stats["share_groups"][0]
    assert (group["group"], group["filter"], group["members"]) == ("team", "tasks/#", 1)
    assert stats["delayed"]["enabled"] is True
    assert isinstance(stats["store"]["enabled"], bool)

    status, headers, page = get(b, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<script src="/status.js"' in page
    assert b"http://" not in page and b"https://" not in page  # nothing from elsewhere
    status, headers, js = get(b, "/status.js")
    assert status == 200 and "javascript" in headers["Content-Type"]
    assert b"/api/v1/stats" in js and b"innerHTML" not in js
    assert b"http://" not in js and b"https://" not in js
    assert get(b, "/status.css")[0] == 200
    # Rendered by a real browser: the CPU line names the main loop.
    chromium = shutil.which("chromium")
    if not chromium:
        pytest.skip("chromium not installed: the status page is not rendered")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", "http://%s:%d/" % (HOST, b.http_port)],
                         capture_output=True, text=True, timeout=25).stdout
    line = re.search(r'<p id="threads"[^>]*>([^<]*)', dom)
    assert line and re.match(r"main [0-9.]+ (s|%)", line.group(1)), dom[-2000:]


def test_basic_auth(make_broker, tmp_path):
    pw = str(tmp_path / "passwords")
    subprocess.run([PETREL_BIN, "passwd", "-c", "-b", pw, "ops", "wall screen"], check=True,
                   capture_output=True)
    b = http_broker(make_broker, http={"basic_auth": True}, auth={"password_file": pw})

    def auth(user, password):
        return {"Authorization": "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()}
    status, headers, _ = get(b, "/metrics")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert get(b, "/metrics", headers=auth("ops", "wrong"))[0] == 401
    assert get(b, "/api/v1/stats", headers=auth("nobody", "wall screen"))[0] == 401
    assert get(b, "/", headers=auth("ops", "wall screen"))[0] == 200
    scrape(b, headers=auth("ops", "wall screen"))
    assert get(b, "/healthz")[0] == 200  # probes need no credentials


def test_https(make_broker):
    d = tempfile.mkdtemp(prefix="petrel-http-tls-")
    try:
        ca = CertAuthority(d)
        cert, key = ca.issue("server", "localhost", server=True)
        b = http_broker(make_broker, http={"tls": {"cert_file": cert, "key_file": key}})
        ctx = ssl.create_default_context(cafile=ca.cert)
        assert get(b, "/healthz", context=ctx)[0::2] == (200, b"ok\n")
        scrape(b, context=ctx)
        # Plain HTTP to the HTTPS port gets no answer in plain text.
        with socket.create_connection((HOST, b.http_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            data = s.recv(4096)
            assert not data.startswith(b"HTTP/1.1 200")
        assert get(b, "/healthz", context=ctx)[0] == 200
    finally:
        shutil.rmtree(d, ignore_errors=True)


def raw_exchange(b, data, timeout=5):
    """Sends `data` on a fresh connection; returns everything read until the
    server closes."""
    with socket.create_connection((HOST, b.http_port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return got
            got += chunk


def test_bad_input_gets_400_and_closes_only_that_connection(make_broker):
    b = http_broker(make_broker)
    mqtt_client = b.connected("still-here")
    mqtt_client.subscribe([("alive/#", 0)])
    # A keep-alive connection open next to the bad ones keeps working.
    keep = http.client.HTTPConnection(HOST, b.http_port, timeout=5)
    keep.request("GET", "/healthz")
    assert keep.getresponse().read() == b"ok\n"

    for bad in (b"\x00\x01\x02garbage\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 10000 + b"\r\n\r\n",
                m.connect("mqtt-on-http", 4, keepalive=60),
                b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n",
                b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n"):
        got = raw_exchange(b, bad)
        assert got.startswith(b"HTTP/1.1 400 Bad Request\r\n"), (bad[:40], got[:80])
        assert b"Connection: close\r\n" in got

    # Pipelined requests on one connection are answered in order.
    got = raw_exchange(b, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert got.count(b"HTTP/1.1 200 OK") == 2 and got.endswith(b"ready\n")

    keep.request("GET", "/healthz")
    assert keep.getresponse().read() == b"ok\n"
    keep.close()
    pub = b.connected("pub-after")
    pub.publish("alive/1", b"yes", qos=1)
    assert mqtt_client.recv_publish().payload == b"yes"
    assert get(b, "/healthz")[0] == 200


def collect_sys(c, want, until=lambda seen: True, timeout=5.0):
    """Reads $SYS updates until every topic of `want` has been seen and
    `until(latest values)` holds."""
    seen = {}
    deadline = time.monotonic() + timeout
    while not (want <= seen.keys() and until(seen)):
        left = deadline - time.monotonic()
        assert left > 0, "missing %s" % sorted(want - seen.keys()) if not want <= seen.keys() else seen
        p = c.recv_publish(timeout=left)
        seen[p.topic] = p.payload.decode()
    return seen


MOSQUITTO_NAMES = [
    "bytes/received", "bytes/sent", "clients/connected", "clients/disconnected", "clients/maximum",
    "clients/total", "clients/expired", "messages/received", "messages/sent", "messages/inflight",
    "publish/messages/received", "publish/messages/sent", "publish/messages/dropped",
    "subscriptions/count", "retained messages/count", "store/messages/count", "uptime", "version",
] + ["load/%s/%s" % (what, w) for what in ("messages/received", "messages/sent", "publish/received",
                                            "publish/sent", "publish/dropped", "bytes/received", "bytes/sent",
                                            "connections", "sockets")
     for w in ("1min", "5min", "15min")]


def test_mosquitto_sys_names_exist_and_move(make_broker):
    b = make_broker(mqtt={"sys_interval": 1})
    watcher = b.connected("sys-names")
    watcher.subscribe([("$SYS/broker/#", 0)])
    want = {"$SYS/broker/" + n for n in MOSQUITTO_NAMES}
    first = collect_sys(watcher, want)
    mosquitto_pub(b, "load/test", 50, qos=1)
    received = int(first["$SYS/broker/publish/messages/received"])

    def shows_traffic(seen):
        return (int(seen["$SYS/broker/publish/messages/received"]) >= received + 50 and
                float(seen["$SYS/broker/load/messages/received/1min"]) > 0 and
                float(seen["$SYS/broker/load/connections/1min"]) > 0)
    second = collect_sys(watcher, want, shows_traffic)
    assert int(second["$SYS/broker/bytes/received"]) > int(first["$SYS/broker/bytes/received"])
    assert int(second["$SYS/broker/messages/received"]) >= received + 50
    assert int(second["$SYS/broker/clients/maximum"]) >= 2
    assert re.match(r"^\d+\.\d\d$", second["$SYS/broker/load/bytes/sent/15min"])
