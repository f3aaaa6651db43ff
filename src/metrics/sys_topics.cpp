// $SYS topics: the broker's metrics as MQTT messages, every
// mqtt.sys_interval seconds, in the layout mosquitto users know
// ($SYS/broker/...), plus one subtree per shared subscription group. They
// are retained in memory (a subscriber gets the latest values at once) but
// never written to the store: after a restart they start afresh.
#include <cstdio>

#include "src/metrics/sys_topics.h"

#include "src/delayed/delayed_publish.h"
#include "src/durable/durable.h"
#include "src/queues/shared_groups.h"
#include "src/metrics/monitor.h"
#include "src/routing/router.h"
#include "src/sessions/output_budget.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"
#include "src/transport/connection.h"

namespace petrel {

void SysTopics::start() { started_ms_ = p_.clock.monotonicMs(); }

void SysTopics::publish() {
  auto put = [&](const std::string& topic, const std::string& value) {
    auto m = makeMessage();
    m->topic = "$SYS/broker/" + topic;
    m->payload = value;
    m->retain = true;
    m->id = p_.durable.newMessageId();
    MessagePtr msg = std::move(m);
    p_.router.retainInMemory(msg);  // never stored
    p_.router.route(msg);
  };
  auto num = [](uint64_t v) { return std::to_string(v); };
  put("version", std::string("petrel ") + PETREL_VERSION);
  put("uptime", num((p_.clock.monotonicMs() - started_ms_) / 1000) + " seconds");
  const Monitor::Totals& totals = p_.monitor.totals();
  put("clients/connected", num(p_.stats.clients_connected));
  put("clients/total", num(p_.sessions.size()));
  put("clients/connections_total", num(p_.stats.connections_total));
  put("messages/received", num(p_.stats.messages_received));
  put("messages/sent", num(p_.stats.messages_delivered));
  put("messages/dropped", num(p_.stats.messages_dropped));
  put("messages/dropped/output_budget", num(p_.stats.qos0_dropped_output));
  put("messages/expired", num(p_.stats.messages_expired));
  put("clients/output_bytes", num(p_.budget.total()));
  put("subscriptions/count", num(p_.router.tree().subscriptionCount()));
  put("retained messages/count", num(p_.router.retained().size()));
  if (p_.durable.enabled()) put("store/bytes", num(p_.durable.store().usedBytes()));
  // mosquitto's names (man mosquitto, "BROKER STATUS"), next to Petrel's.
  put("clients/disconnected", num(totals.sessions_offline));
  put("clients/maximum", num(p_.stats.clients_maximum));
  put("clients/expired", num(p_.stats.sessions_expired));
  put("bytes/received", num(p_.stats.bytes_received));
  put("bytes/sent", num(p_.stats.bytes_sent));
  put("publish/messages/received", num(p_.stats.messages_received));
  put("publish/messages/sent", num(p_.stats.messages_delivered));
  put("publish/messages/dropped", num(p_.stats.messages_dropped));
  put("messages/inflight", num(totals.inflight));
  // Messages held: the store's message records; without a store, the
  // retained and queued ones in memory.
  put("store/messages/count", num(p_.durable.enabled() ? p_.durable.store().stats().messages
                                                       : p_.router.retained().size() + totals.queued_memory));
  struct LoadTopic {
    Monitor::Load which;
    const char* topic;
  };
  static const LoadTopic loads[] = {
      {Monitor::kMessagesReceived, "load/messages/received/"}, {Monitor::kMessagesSent, "load/messages/sent/"},
      {Monitor::kMessagesReceived, "load/publish/received/"},  {Monitor::kMessagesSent, "load/publish/sent/"},
      {Monitor::kPublishDropped, "load/publish/dropped/"},     {Monitor::kBytesReceived, "load/bytes/received/"},
      {Monitor::kBytesSent, "load/bytes/sent/"},               {Monitor::kConnections, "load/connections/"},
      {Monitor::kSockets, "load/sockets/"},
  };
  static const char* const windows[3] = {"1min", "5min", "15min"};
  for (const LoadTopic& l : loads) {
    for (int i = 0; i < 3; ++i) {
      char v[32];
      std::snprintf(v, sizeof v, "%.2f", p_.monitor.load(l.which).perMinute(i));
      put(std::string(l.topic) + windows[i], v);
    }
  }
  if (p_.delayed.enabled()) {
    put("delayed/pending", num(p_.delayed.pending()));
    put("delayed/fired", num(p_.delayed.fired()));
    put("delayed/dropped", num(p_.delayed.dropped()));
    put("delayed/refused", num(p_.delayed.refused()));
  }
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
  for (Connection* c : p_.connections)
    if (c->dropped_qos0 && c->session)
      put("clients/dropped_output/" + escape(c->session->clientId(), true), num(c->dropped_qos0));
  p_.router.tree().forEachGroup([&](SharedGroup& g) {
    size_t up = 0;
    for (auto& m : g.members) up += m.session->conn != nullptr;
    const std::string base = "shared/" + g.name + "/" + escape(g.filter, false) + "/";
    put(base + "members", num(g.members.size()));
    put(base + "online", num(up));
    put(base + "queued", num(g.queued()));
    put(base + "inflight", num(g.work ? g.work->inflight : 0));
    put(base + "delivered", num(g.work ? g.work->delivered : 0));
    put(base + "redelivered", num(g.work ? g.work->redelivered : 0));
    put(base + "dropped", num(g.work ? g.work->dropped : 0));
  });
  // Declared queues (`queues:`), by name.
  p_.router.groups().forEachQueue([&](const DeclaredQueue& q) {
    const QueueStats st = p_.router.groups().queueStats(q);
    const std::string base = "queues/" + q.cfg.name + "/";
    put(base + "depth", num(st.depth));
    put(base + "bytes", num(st.bytes));
    put(base + "oldest_age", num(st.oldest_age_s));
    put(base + "consumers", num(st.consumers));
    put(base + "online", num(st.online));
    put(base + "inflight", num(st.inflight));
    put(base + "delivered", num(st.delivered));
    put(base + "dropped", num(st.dropped));
    put(base + "expired", num(st.expired));
  });
}

}  // namespace petrel
