"""A real browser through Petrel's WebSocket listeners: headless Chromium
loads a page (tests/e2e/browser, served here) that uses MQTT.js over ws://
and wss:// (MQTT 5 and 3.1.1), subscribes, and exchanges QoS 0, 1 and 2
messages with a paho client on TCP. The page shows its results and posts
them to this test's server.

Needs `chromium` (apt) and `npm ci --prefix tests/e2e/browser` (MQTT.js);
skipped with the reason when either is missing."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse

import paho.mqtt.client as paho
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

from petrel_tls_helpers import Broker, CertAuthority, free_port, tmpdir

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE_DIR = os.path.join(HERE, "browser")
MQTT_JS = os.path.join(PAGE_DIR, "node_modules", "mqtt", "dist", "mqtt.min.js")
RESULT_TIMEOUT_S = 20  # within conftest's 30 s per test


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class PageServer:
    """Serves the page directory; takes the page's POST /result."""

    def __init__(self):
        self.result = None
        self.got = threading.Event()
        owner = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                owner.result = json.loads(self.rfile.read(n) or b"{}")
                self.send_response(204)
                self.end_headers()
                owner.got.set()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                     functools.partial(Handler, directory=PAGE_DIR))
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def broker():
    d = tmpdir()
    ca = CertAuthority(d)
    cert, key = ca.issue("server", "localhost", server=True)
    cfg = lambda: {
        "log_level": "info",
        "listeners": [
            {"address": "127.0.0.1", "port": free_port()},
            {"address": "127.0.0.1", "port": free_port(), "websocket": None},
            {"address": "127.0.0.1", "port": free_port(), "tls": {"cert_file": cert, "key_file": key},
             "websocket": None},
        ],
    }
    b = Broker(d, cfg).start()
    yield b
    b.stop()
    shutil.rmtree(d, ignore_errors=True)


def test_browser_mqtt_js_over_ws_and_wss(broker):
    browser = chromium()
    if not browser:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if not os.path.exists(MQTT_JS):
        pytest.skip("MQTT.js is not installed: npm ci --prefix tests/e2e/browser")

    # The TCP side: answers each browser's "ready" with QoS 0, 1 and 2
    # messages and collects what the browsers publish.
    from_browser = {}
    lock = threading.Lock()

    def on_message(client, userdata, msg):
        _, name, _, what = msg.topic.split("/", 3)
        if what == "ready":
            for qos in (0, 1, 2):
                client.publish("browser/%s/in/%d" % (name, qos), "from tcp to %s q%d" % (name, qos), qos=qos)
        else:
            with lock:
                from_browser[msg.topic] = (msg.payload.decode(), msg.qos)

    subscribed = threading.Event()
    tcp = paho.Client(client_id="tcp-side", protocol=paho.MQTTv311)
    tcp.on_message = on_message
    tcp.on_subscribe = lambda *a: subscribed.set()
    tcp.connect("127.0.0.1", broker.port(0))
    tcp.loop_start()
    server = PageServer()
    profile = tempfile.mkdtemp(prefix="petrel-chromium-")
    proc = None
    try:
        tcp.subscribe("browser/+/out/#", qos=2)
        assert subscribed.wait(5)
        runs = [
            {"name": "ws5", "url": "ws://127.0.0.1:%d/mqtt" % broker.port(1), "version": 5},
            {"name": "ws4", "url": "ws://127.0.0.1:%d/mqtt" % broker.port(1), "version": 4},
            {"name": "wss5", "url": "wss://127.0.0.1:%d/mqtt" % broker.port(2), "version": 5},
        ]
        url = "http://127.0.0.1:%d/index.html?runs=%s" % (server.port, urllib.parse.quote(json.dumps(runs)))
        log_path = os.path.join(profile, "chromium.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                 "--ignore-certificate-errors",  # the test CA's certificate on wss
                 "--user-data-dir=" + profile, url],
                stdout=log, stderr=subprocess.STDOUT)
        if not server.got.wait(RESULT_TIMEOUT_S):
            with open(log_path, "rb") as f:
                pytest.fail("no result from the browser within %d s; chromium said:\n%s\nbroker log:\n%s"
                            % (RESULT_TIMEOUT_S, f.read().decode(errors="replace")[-4000:], broker.log()[-4000:]))
        result = server.result
        assert result.get("status") == "done", json.dumps(result, indent=1)
        for run in runs:
            name = run["name"]
            r = result["results"][name]
            assert r["granted"] == [2], r
            assert r["received"] == {"browser/%s/in/%d" % (name, q): {"payload": "from tcp to %s q%d" % (name, q),
                                                                    "qos": q} for q in (0, 1, 2)}, r
        # Everything the browsers published reached the TCP client.
        for _ in range(50):
            with lock:
                if len(from_browser) == 3 * len(runs):
                    break
            time.sleep(0.1)
        with lock:
            assert from_browser == {
                "browser/%s/out/%d" % (run["name"], q): ("from the browser over %s q%d" % (run["name"], q), q)
                for run in runs for q in (0, 1, 2)}
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(10)
        server.stop()
        tcp.loop_stop()
        tcp.disconnect()
        shutil.rmtree(profile, ignore_errors=True)
