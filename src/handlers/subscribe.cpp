// SUBSCRIBE / SUBACK (§3.8, §3.9) and UNSUBSCRIBE / UNSUBACK (§3.10,
// §3.11), including shared subscriptions (§4.8.2) and the retained messages
// sent on subscribe per Retain Handling (§3.3.1.3).
#include "mqtt/decoder.h"
#include "mqtt/encoder.h"
#include "mqtt/topic.h"
#include "src/broker/broker.h"
#include "src/queues/queue_policy.h"
#include "src/util/log.h"

namespace petrel {

void Broker::handleSubscribe(Connection& c, const mqtt::Frame& f) {
  using mqtt::Reason;
  Session& s = *c.session;
  const bool v5 = c.version == mqtt::Version::V5;
  mqtt::Subscribe p;
  Reason rc = mqtt::parse(f, c.version, p);
  if (rc != Reason::Success) return protocolError(c, rc, "malformed SUBSCRIBE");
  const uint32_t sub_id = p.props.subscription_identifiers.empty() ? 0 : p.props.subscription_identifiers[0];

  mqtt::Suback ack;
  ack.packet_id = p.packet_id;
  struct RetainedToSend {
    std::string filter;
    SubscriptionOptions opts;
  };
  std::vector<RetainedToSend> retained;
  std::vector<SharedGroup*> joined;  // may hand the new member queued messages
  auto options = [&](const mqtt::SubscribeTopic& t) {
    SubscriptionOptions o;
    o.qos = t.qos > cfg_.max_qos ? cfg_.max_qos : t.qos;  // §3.8.4: grant at most the maximum QoS
    o.no_local = t.no_local;
    o.retain_as_published = t.retain_as_published;
    o.retain_handling = t.retain_handling;
    o.subscription_id = sub_id;
    return o;
  };
  for (auto& t : p.topics) {
    if (isQueueFilter(t.filter)) {
      // `$queue/<name>`: a member of every share group of a declared queue.
      std::string_view name;
      DeclaredQueue* q = parseQueueFilter(t.filter, name) ? groups_.findQueue(name) : nullptr;
      if (!q) {
        LOG_INFO("client %s: subscription to '%s' refused: no such queue is declared", s.clientId().c_str(),
                 t.filter.c_str());
        ack.reasons.push_back(v5 ? static_cast<uint8_t>(Reason::TopicFilterInvalid) : 0x80);
        continue;
      }
      bool allowed = true;
      for (const auto& f : q->cfg.filters) allowed = allowed && sessions_.maySubscribe(s, f);
      if (!allowed) {
        LOG_INFO("client %s: subscription to '%s' denied by the ACL", s.clientId().c_str(), t.filter.c_str());
        ack.reasons.push_back(v5 ? static_cast<uint8_t>(Reason::NotAuthorized) : 0x80);
        continue;
      }
      if (t.no_local)  // [MQTT-3.8.3-4], as for `$share/`
        return protocolError(c, Reason::ProtocolError, "No Local on a queue subscription");
      const SubscriptionOptions o = options(t);
      groups_.joinQueue(s, *q, o, &joined);
      s.subscriptions.set(t.filter, o);
      if (durable_.enabled() && s.stored) sessions_.saveSubscription(s, t.filter, o);
      ack.reasons.push_back(o.qos);
      continue;
    }
    mqtt::SharedFilter sf;
    const bool ok = mqtt::parseSharedFilter(t.filter, sf) &&
                    mqtt::validTopicFilter(sf.shared ? sf.filter : std::string_view(t.filter),
                                           cfg_.max_topic_levels);
    if (!ok) {
      // §3.9.3: a bad filter fails alone: 0x80 (v3.1.1) / 0x8F (v5).
      LOG_DEBUG("client %s: invalid topic filter '%s'", s.clientId().c_str(), t.filter.c_str());
      ack.reasons.push_back(v5 ? static_cast<uint8_t>(Reason::TopicFilterInvalid) : 0x80);
      continue;
    }
    if (!sessions_.maySubscribe(s, sf.shared ? sf.filter : std::string_view(t.filter))) {
      // ACL: this filter fails alone, 0x80 (v3.1.1) / 0x87 Not authorized (v5).
      LOG_INFO("client %s: subscription to '%s' denied by the ACL", s.clientId().c_str(), t.filter.c_str());
      ack.reasons.push_back(v5 ? static_cast<uint8_t>(Reason::NotAuthorized) : 0x80);
      continue;
    }
    if (sf.shared && t.no_local)  // [MQTT-3.8.3-4]
      return protocolError(c, Reason::ProtocolError, "No Local on a shared subscription");
    const SubscriptionOptions o = options(t);
    const std::string group(sf.group);
    const std::string filter(sf.shared ? sf.filter : std::string_view(t.filter));
    const bool existed = router_.tree().subscribe(filter, group, &s, o);
    if (sf.shared) {
      s.has_shared = true;
      SharedGroup* g = router_.tree().findGroup(filter, group, false);
      groups_.configure(*g);
      joined.push_back(g);
    }
    s.subscriptions.set(t.filter, o);
    if (durable_.enabled() && s.stored) sessions_.saveSubscription(s, t.filter, o);
    ack.reasons.push_back(o.qos);
    // [MQTT-3.3.1-9..11] retained messages: 0 always, 1 only for a new
    // subscription, 2 never; never for shared subscriptions (§4.8.2).
    if (!sf.shared && cfg_.retain_available &&
        (o.retain_handling == 0 || (o.retain_handling == 1 && !existed)))
      retained.push_back({filter, o});
  }
  mqtt::encode(ack, c.version, c.out());
  for (auto& r : retained) router_.sendRetained(s, r.filter, r.opts);
  for (SharedGroup* g : joined) groups_.dispatch(*g);
}

void Broker::handleUnsubscribe(Connection& c, const mqtt::Frame& f) {
  using mqtt::Reason;
  Session& s = *c.session;
  mqtt::Unsubscribe p;
  Reason rc = mqtt::parse(f, c.version, p);
  if (rc != Reason::Success) return protocolError(c, rc, "malformed UNSUBSCRIBE");
  mqtt::Unsuback ack;
  ack.packet_id = p.packet_id;
  for (const auto& filter : p.filters) {
    if (!s.subscriptions.find(filter)) {
      ack.reasons.push_back(static_cast<uint8_t>(Reason::NoSubscriptionExisted));
      continue;
    }
    router_.unsubscribe(s, filter);
    if (durable_.enabled() && s.stored) durable_.batch().deleteSubscription(s.clientId(), filter);
    s.subscriptions.erase(filter);
    ack.reasons.push_back(static_cast<uint8_t>(Reason::Success));
  }
  mqtt::encode(ack, c.version, c.out());
}

}  // namespace petrel
