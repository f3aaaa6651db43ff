// Routing and delivery: a published message is matched against the topic
// tree once, overlapping subscriptions of one session are merged into one
// delivery (highest QoS, every subscription identifier; §3.3.4), share
// groups pick one member, and each session sends or queues its copy.
#include <algorithm>

#include "mqtt/encoder.h"
#include "src/broker.h"
#include "src/log.h"

namespace petrel {

namespace {

struct Target {
  Session* session;
  uint8_t qos;
  bool retain_as_published;
  std::vector<uint32_t> ids;
};

// Picks the member of a share group that gets the next message: round robin
// over the members that are online; an offline member only when none is.
Subscriber* pickMember(SharedGroup& g) {
  const size_t n = g.members.size();
  if (n == 0) return nullptr;
  for (size_t i = 0; i < n; ++i) {
    Subscriber& m = g.members[(g.next + i) % n];
    if (m.session->conn) {
      g.next = (g.next + i + 1) % n;
      return &m;
    }
  }
  Subscriber& m = g.members[g.next % n];
  g.next = (g.next + 1) % n;
  return &m;
}

}  // namespace

size_t Broker::route(const MessagePtr& m) {
  const uint64_t gen = ++match_gen_;
  std::vector<Target> targets;
  tree_.match(
      m->topic,
      [&](const Subscriber& sub) {
        Session* s = sub.session;
        // [MQTT-3.8.3-3] No Local: not back to the publisher.
        if (sub.opts.no_local && s->clientId() == m->origin) return;
        if (s->match_gen != gen) {
          s->match_gen = gen;
          s->match_index = targets.size();
          targets.push_back({s, sub.opts.qos, sub.opts.retain_as_published, {}});
          if (sub.opts.subscription_id) targets.back().ids.push_back(sub.opts.subscription_id);
          return;
        }
        Target& t = targets[s->match_index];
        t.qos = std::max(t.qos, sub.opts.qos);
        t.retain_as_published = t.retain_as_published || sub.opts.retain_as_published;
        if (sub.opts.subscription_id) t.ids.push_back(sub.opts.subscription_id);
      },
      [&](SharedGroup& g) {
        // A shared subscription is a delivery of its own, never merged with
        // the session's other subscriptions.
        Subscriber* sub = pickMember(g);
        if (!sub) return;
        Target t{sub->session, sub->opts.qos, sub->opts.retain_as_published, {}};
        if (sub->opts.subscription_id) t.ids.push_back(sub->opts.subscription_id);
        targets.push_back(std::move(t));
      });
  for (Target& t : targets) {
    // ACL: read access of the receiving client, checked at delivery time.
    if (!mayReceive(*t.session, m->topic)) continue;
    Delivery d;
    d.msg = m;
    d.qos = std::min(m->qos, t.qos);  // [MQTT-3.8.4-8] downgrade to granted
    d.retain = t.retain_as_published && m->retain;  // [MQTT-3.3.1-12/13]
    d.subscription_ids = std::move(t.ids);
    deliver(*t.session, std::move(d));
  }
  return targets.size();
}

void Broker::deliver(Session& s, Delivery&& d) {
  Connection* c = s.conn;
  const bool online = c && !c->closing();
  if (d.qos == 0) {
    // QoS 0 is sent now or never: not queued for offline sessions, and
    // dropped for a client whose socket cannot keep up.
    if (!online) return;
    if (c->pendingOutput() >= kOutputLimit) {
      ++stats_.messages_dropped;
      return;
    }
    sendPublish(s, *c, d, 0, false);
    return;
  }
  if (online && s.queue.empty() && s.inflight.size() < s.client_receive_max &&
      c->pendingOutput() < kOutputHighWater) {
    const uint16_t pid = s.nextPacketId();
    if (sendPublish(s, *c, d, pid, false)) s.inflight.push_back({pid, std::move(d), false});
    return;
  }
  if (cfg_.max_queued_messages && s.queue.size() >= cfg_.max_queued_messages) {
    ++s.dropped;
    ++stats_.messages_dropped;
    if (!s.drop_logged) {
      s.drop_logged = true;
      LOG_WARN("client %s: queue full (limits.max_queued_messages = %u), dropping messages",
               s.clientId().c_str(), cfg_.max_queued_messages);
    }
    return;
  }
  s.queue.push_back(std::move(d));
}

void Broker::pump(Session& s) {
  Connection* c = s.conn;
  if (!c || c->closing() || !c->connected) return;
  while (!s.queue.empty() && s.inflight.size() < s.client_receive_max) {
    if (c->pendingOutput() >= kOutputHighWater) break;  // resumed by onWritable
    Delivery d = std::move(s.queue.front());
    s.queue.pop_front();
    const uint16_t pid = s.nextPacketId();
    if (sendPublish(s, *c, d, pid, false)) s.inflight.push_back({pid, std::move(d), false});
  }
  if (s.queue.empty()) s.drop_logged = false;
}

bool Broker::sendPublish(Session& s, Connection& c, const Delivery& d, uint16_t pid, bool dup) {
  const Message& m = *d.msg;
  const bool v5 = c.version == mqtt::Version::V5;
  uint32_t expiry_left = 0;
  if (m.expires_at_ms) {
    const int64_t now = nowMs();
    // [MQTT-3.3.2-5] an expired message is not delivered.
    if (m.expires_at_ms <= now) {
      ++stats_.messages_dropped;
      return false;
    }
    // [MQTT-3.3.2-6] the interval sent is what remains.
    expiry_left = static_cast<uint32_t>((m.expires_at_ms - now + 999) / 1000);
  }
  std::string_view topic = m.topic;
  const mqtt::Properties* props = nullptr;
  mqtt::Properties tmp;
  if (v5) {
    uint16_t alias = 0;
    bool alias_known = false;
    bool alias_new = false;
    if (cfg_.outbound_topic_aliases && s.client_topic_alias_max) {
      // Topic aliases toward the client: the first topics get an alias for
      // the life of the connection (§3.3.2.3.4).
      auto& a = c.out_topic_aliases;
      auto it = std::find(a.begin(), a.end(), m.topic);
      if (it != a.end()) {
        alias = static_cast<uint16_t>(it - a.begin() + 1);
        alias_known = true;
      } else if (a.size() < std::min(cfg_.outbound_topic_aliases, s.client_topic_alias_max)) {
        a.push_back(m.topic);
        alias = static_cast<uint16_t>(a.size());
        alias_new = true;
      }
    }
    if (m.has_props || m.expires_at_ms || !d.subscription_ids.empty() || alias) {
      tmp = m.props;
      if (m.expires_at_ms) tmp.message_expiry_interval = expiry_left;
      tmp.subscription_identifiers = d.subscription_ids;
      if (alias) tmp.topic_alias = alias;
      props = &tmp;
    }
    if (alias_known) topic = {};
    if (s.client_max_packet &&
        mqtt::publishSize(c.version, topic, d.qos, props, m.payload.size()) > s.client_max_packet) {
      if (alias_new) c.out_topic_aliases.pop_back();
      alias = 0;
    }
  }
  if (s.client_max_packet &&
      mqtt::publishSize(c.version, topic, d.qos, props, m.payload.size()) > s.client_max_packet) {
    // [MQTT-3.1.2-25] never send a packet above the client's Maximum
    // Packet Size: the message is discarded for this client.
    ++stats_.messages_dropped;
    LOG_DEBUG("client %s: message on '%s' exceeds its maximum packet size, dropped",
              s.clientId().c_str(), m.topic.c_str());
    return false;
  }
  mqtt::encodePublish(c.out(), c.version, topic, m.payload, d.qos, d.retain, dup, pid, props);
  ++stats_.messages_delivered;
  return true;
}

}  // namespace petrel
