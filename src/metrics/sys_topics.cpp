// $SYS topics: the broker's metrics as MQTT messages, every
// mqtt.sys_interval seconds, in the layout mosquitto users know
// ($SYS/broker/...), plus one subtree per shared subscription group. They
// are retained in memory (a subscriber gets the latest values at once) but
// never written to the store: after a restart they start afresh.
#include <cstdio>

#include "src/broker/broker.h"

namespace petrel {

void Broker::publishSys() {
  size_t online = 0;
  for (Connection* c : connections_) online += c->connected;
  auto put = [&](const std::string& topic, const std::string& value) {
    auto m = std::make_shared<Message>();
    m->topic = "$SYS/broker/" + topic;
    m->payload = value;
    m->retain = true;
    if (store_) m->id = next_msg_id_++;
    MessagePtr p = std::move(m);
    retained_.set(p);  // memory only
    route(p);
  };
  auto num = [](uint64_t v) { return std::to_string(v); };
  put("version", std::string("petrel ") + PETREL_VERSION);
  put("uptime", num((uv_now(loop_) - started_ms_) / 1000) + " seconds");
  put("clients/connected", num(online));
  put("clients/total", num(sessions_.size()));
  put("clients/connections_total", num(stats_.connections_total));
  put("messages/received", num(stats_.messages_received));
  put("messages/sent", num(stats_.messages_delivered));
  put("messages/dropped", num(stats_.messages_dropped));
  put("messages/dropped/output_budget", num(stats_.qos0_dropped_output));
  put("clients/output_bytes", num(output_total_));
  put("subscriptions/count", num(tree_.subscriptionCount()));
  put("retained messages/count", num(retained_.size()));
  if (store_) put("store/bytes", num(store_->usedBytes()));
  // A filter's wildcards may not appear in a topic name: '+', '#' and '%'
  // are written %2B, %23 and %25 (and '/' in a client id, %2F).
  auto escape = [](const std::string& in, bool slash) {
    std::string out;
    for (char ch : in) {
      if (ch == '+') out += "%2B";
      else if (ch == '#') out += "%23";
      else if (ch == '%') out += "%25";
      else if (slash && ch == '/') out += "%2F";
      else out += ch;
    }
    return out;
  };
  // Per client, while connected: QoS 0 dropped over its output budget.
  for (Connection* c : connections_)
    if (c->dropped_qos0 && c->session)
      put("clients/dropped_output/" + escape(c->session->clientId(), true), num(c->dropped_qos0));
  tree_.forEachGroup([&](SharedGroup& g) {
    size_t up = 0;
    for (auto& m : g.members) up += m.session->conn != nullptr;
    const std::string base = "shared/" + g.name + "/" + escape(g.filter, false) + "/";
    put(base + "members", num(g.members.size()));
    put(base + "online", num(up));
    put(base + "queued", num(g.queued()));
    put(base + "inflight", num(g.inflight));
    put(base + "delivered", num(g.delivered));
    put(base + "redelivered", num(g.redelivered));
    put(base + "dropped", num(g.dropped));
  });
}

}  // namespace petrel
