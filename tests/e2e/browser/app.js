// The browser side of tests/e2e/test_27_websocket_browser.py. For each
// broker URL in ?runs=[{name, url, version}, ...], in turn: connect with
// MQTT.js, subscribe to browser/<name>/in/# at QoS 2, announce
// browser/<name>/out/ready, wait for the three messages (QoS 0, 1, 2) the
// test's TCP client sends then, and publish three of its own on
// browser/<name>/out/<qos>. The results go into the page and, as JSON, to
// the test's server (POST /result).
"use strict";

function show(status, result) {
  document.getElementById("status").textContent = status;
  document.getElementById("result").textContent = JSON.stringify(result, null, 1);
}

async function runOne(run) {
  const client = mqtt.connect(run.url, {
    protocolVersion: run.version,
    clientId: "browser-" + run.name,
    reconnectPeriod: 0,
    connectTimeout: 10000,
  });
  await new Promise((resolve, reject) => {
    client.once("connect", resolve);
    client.once("error", reject);
    client.once("close", () => reject(new Error("closed before CONNACK")));
  });
  const received = {};
  const allIn = new Promise((resolve) => {
    client.on("message", (topic, payload, packet) => {
      received[topic] = { payload: payload.toString(), qos: packet.qos };
      if (Object.keys(received).length === 3) resolve();
    });
  });
  const granted = await client.subscribeAsync("browser/" + run.name + "/in/#", { qos: 2 });
  await client.publishAsync("browser/" + run.name + "/out/ready", "ready", { qos: 1 });
  await Promise.race([allIn, new Promise((resolve, reject) =>
    setTimeout(() => reject(new Error("got " + JSON.stringify(received) + " within 15 s")), 15000))]);
  for (const qos of [0, 1, 2])
    await client.publishAsync("browser/" + run.name + "/out/" + qos, "from the browser over " + run.name + " q" + qos,
                              { qos: qos });
  await client.endAsync();
  return { granted: granted.map((g) => g.qos), received: received, url: run.url };
}

async function main() {
  const runs = JSON.parse(new URLSearchParams(location.search).get("runs"));
  const results = {};
  let status = "done";
  for (const run of runs) {
    show("running " + run.name, results);
    try {
      results[run.name] = await runOne(run);
    } catch (e) {
      results[run.name] = { error: String(e && e.message ? e.message : e) };
      status = "failed";
    }
  }
  show(status, results);
  await fetch("/result", { method: "POST", body: JSON.stringify({ status: status, results: results }) });
}

main().catch((e) => {
  show("failed", { error: String(e) });
  fetch("/result", { method: "POST", body: JSON.stringify({ status: "failed", error: String(e) }) });
});
