// Routing and delivery: a published message is matched against the topic
// tree once, overlapping subscriptions of one session are merged into one
// delivery (highest QoS, every subscription identifier; §3.3.4), share
// groups pick one member, and each session sends or queues its copy.
#include <algorithm>

#include "mqtt/encoder.h"
#include "src/broker/broker.h"
#include "src/util/log.h"

namespace petrel {

namespace {

struct Target {
  Session* session;
  uint8_t qos;
  bool retain_as_published;
  std::vector<uint32_t> ids;
};

}  // namespace

RouteResult Broker::route(const MessagePtr& m, uint32_t extra_refs) {
  const uint64_t gen = ++match_gen_;
  std::vector<Target> targets;
  std::vector<SharedGroup*> groups;
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
        // the session's other subscriptions: the group queues it.
        groups.push_back(&g);
      });
  uint32_t stored = 0;
  // A QoS 1 message kept only for durable receivers that get it at once can
  // be acknowledged to its publisher when they have all acknowledged it.
  AckGatePtr gate;
  if (store_ && m->qos == 1 && extra_refs == 0) gate = std::make_shared<AckGate>();
  bool must_commit = false;  // a stored copy waits in a queue: the commit decides
  for (SharedGroup* g : groups) {
    if (groupEnqueue(*g, m)) {
      ++stored;
      must_commit = true;  // the group queue holds it until a member acks
    }
    dispatchGroup(*g);
  }
  for (Target& t : targets) {
    // ACL: read access of the receiving client, checked at delivery time.
    if (!mayReceive(*t.session, m->topic)) continue;
    Delivery d;
    d.msg = m;
    d.qos = std::min(m->qos, t.qos);  // [MQTT-3.8.4-8] downgrade to granted
    d.retain = t.retain_as_published && m->retain;  // [MQTT-3.3.1-12/13]
    d.subscription_ids = std::move(t.ids);
    switch (deliver(*t.session, std::move(d), gate)) {
      case DeliverOutcome::NotStored: break;
      case DeliverOutcome::StoredInGate: ++stored; break;
      case DeliverOutcome::Stored: ++stored; must_commit = true; break;
    }
  }
  RouteResult r;
  r.matched = targets.size() + groups.size();
  r.stored = stored;
  if (gate && !must_commit && gate->pending() > 0) r.early_ack = std::move(gate);
  // One record for the message, referenced by every durable queue entry
  // (and the retained slot) that holds it: stored once, not per receiver.
  if (store_ && stored + extra_refs > 0) {
    persistence::MessageRecord r;
    r.topic = m->topic;
    r.payload = m->payload;
    r.origin = m->origin;
    r.qos = m->qos;
    r.retain = m->retain;
    r.expires_at_ms = m->expires_at_ms;
    if (m->has_props) mqtt::encodeProperties(m->props, r.props);
    store_->batch().putMessage(m->id, r, stored + extra_refs);
  }
  return r;
}

uint32_t Broker::retain(const MessagePtr& m) {
  retained_.set(m);
  if (!store_) return 0;
  // [MQTT-3.3.1-6/7] an empty payload clears the slot.
  store_->batch().setRetained(m->topic, m->payload.empty() ? 0 : m->id);
  return m->payload.empty() ? 0 : 1;
}

DeliverOutcome Broker::deliver(Session& s, Delivery&& d, const AckGatePtr& gate) {
  Connection* c = s.conn;
  const bool online = c && !c->closing() && c->connected;
  if (d.qos == 0) {
    // QoS 0 is sent now or never: not queued for offline sessions, and
    // dropped for a client whose socket cannot keep up.
    if (!online) return DeliverOutcome::NotStored;
    if (c->pendingOutput() >= kOutputHighWater && !qos0Allowed(s, *c)) return DeliverOutcome::NotStored;
    sendPublish(s, *c, d, 0, false);
    return DeliverOutcome::NotStored;
  }
  const bool persist = durable(s) && s.stored;
  const size_t bytes = d.msg->payload.size();
  const char* limit = nullptr;
  if (cfg_.max_queued_messages && s.queuedCount() >= cfg_.max_queued_messages)
    limit = "limits.max_queued_messages";
  else if (cfg_.max_queued_bytes && s.queued_bytes + bytes > cfg_.max_queued_bytes)
    limit = "limits.max_queued_bytes";
  else if (persist && storeFull())
    limit = "persistence.max_size_mb";
  const bool window_free = online && s.queue.empty() && s.disk_count == 0 &&
                           s.inflight.size() < s.client_receive_max && c->roomForOutput();
  if (limit && !window_free) {
    ++s.dropped;
    ++stats_.messages_dropped;
    if (!s.drop_logged) {
      s.drop_logged = true;
      LOG_WARN("client %s: queue limit reached (%s), dropping messages; %llu dropped so far",
               s.clientId().c_str(), limit, static_cast<unsigned long long>(s.dropped));
    }
    return DeliverOutcome::NotStored;
  }
  if (persist) d.seq = s.next_seq++;
  s.queued_bytes += bytes;
  if (window_free) {
    // Fast path: the window has room, send now; the store entry carries the
    // packet id already.
    const bool gated = persist && gate && d.qos == 1;
    if (gated) d.gate = gate;
    if (!sendNew(s, *c, std::move(d))) return DeliverOutcome::NotStored;
    if (gated) gate->addReceiver();
    if (!persist) return DeliverOutcome::NotStored;
    return gated ? DeliverOutcome::StoredInGate : DeliverOutcome::Stored;
  }
  if (persist) {
    // Kept until the window drains: the commit decides the PUBACK.
    saveQueueEntry(s, d, 0, false);
    // Beyond the RAM window (or for an offline session whose state is on
    // disk) the entry lives only in the store until the window drains.
    if (s.disk_count > 0 || s.queue.size() >= kRamWindow || s.evicted) {
      if (s.disk_count++ == 0) s.next_read_seq = d.seq;
      return DeliverOutcome::Stored;
    }
  }
  s.queue.push_back(std::move(d));
  return persist ? DeliverOutcome::Stored : DeliverOutcome::NotStored;
}

bool Broker::sendNew(Session& s, Connection& c, Delivery&& d) {
  const uint16_t pid = s.nextPacketId();
  const Connection::OutMark mark = c.outMark();
  if (!sendPublish(s, c, d, pid, false)) {
    forget(s, d);  // expired or too large for this client
    return false;
  }
  if (d.seq) {
    saveQueueEntry(s, d, pid, false);
    // Exactly once across a crash: the packet id of a QoS 2 PUBLISH must be
    // stored before the client can see it, or a restart would send the
    // message again under a new id.
    if (d.qos == 2) holdOutput(c, mark);
  }
  s.inflight.push_back({pid, std::move(d), false});
  return true;
}

void Broker::forget(Session& s, const Delivery& d) {
  const size_t bytes = d.msg ? d.msg->payload.size() : 0;
  s.queued_bytes = s.queued_bytes > bytes ? s.queued_bytes - bytes : 0;
  if (d.seq && store_) store_->batch().deleteQueue(s.clientId(), d.seq, d.msg ? d.msg->id : 0);
  if (d.group) groupRelease(*d.group, d);
}

void Broker::pump(Session& s) {
  Connection* c = s.conn;
  if (!c || c->closing() || !c->connected) return;
  while (s.inflight.size() < s.client_receive_max) {
    if (s.queue.empty()) {
      if (s.disk_count == 0) break;
      refill(s, true);
      if (s.queue.empty()) break;
    }
    if (!c->roomForOutput()) break;  // resumed by onWritable
    Delivery d = std::move(s.queue.front());
    s.queue.pop_front();
    sendNew(s, *c, std::move(d));
  }
  if (s.queue.empty() && s.disk_count == 0) s.drop_logged = false;
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
  bool alias_new = false;
  if (v5) {
    uint16_t alias = 0;
    bool alias_known = false;
    if (cfg_.outbound_topic_aliases && s.client_topic_alias_max) {
      // Topic aliases toward the client: the first topics get an alias for
      // the life of the connection (§3.3.2.3.4).
      auto& a = c.aliasTables().out;
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
  }
  if (s.client_max_packet &&
      mqtt::publishSize(c.version, topic, d.qos, props, m.payload.size()) > s.client_max_packet) {
    // [MQTT-3.1.2-25] never send a packet above the client's Maximum
    // Packet Size: the message is discarded for this client (and a topic
    // alias just assigned for it is taken back: the client never saw it).
    if (alias_new) c.aliases->out.pop_back();
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
