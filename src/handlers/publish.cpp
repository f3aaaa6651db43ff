// PUBLISH from clients (§3.3) and the QoS acknowledgements in both
// directions: PUBACK, PUBREC, PUBREL, PUBCOMP (§3.4–§3.7, §4.3).
#include "mqtt/decoder.h"
#include "mqtt/encoder.h"
#include "mqtt/topic.h"
#include "src/bridges/bridge.h"
#include "src/broker/broker.h"
#include "src/util/log.h"

namespace petrel {

void Broker::handlePublish(Connection& c, const mqtt::Frame& f, FrameContext* fc) {
  using mqtt::Reason;
  Session& s = *c.session;
  const bool v5 = c.version == mqtt::Version::V5;
  // The message first: a recycled one lends its payload's buffer to the
  // parse, and its topic's when that is on the heap (a topic longer than a
  // string holds in place, as most devices' topics are), so that most
  // PUBLISHes allocate nothing. The topic's is moved, not swapped: a swap
  // with a string held in place copies bytes, every time.
  auto msg = makeMessage();
  mqtt::Publish p;
  p.payload.swap(msg->payload);
  if (msg->topic.capacity() > p.topic.capacity()) p.topic = std::move(msg->topic);
  Reason rc = mqtt::parse(f, c.version, p);
  if (rc != Reason::Success) return protocolError(c, rc, "malformed PUBLISH");

  if (p.qos > cfg_.max_qos)  // [MQTT-3.2.2-11]
    return protocolError(c, Reason::QosNotSupported, "PUBLISH above the maximum QoS");
  if (p.retain && !cfg_.retain_available) {
    // A remote broker sends on what it has; our bridge takes it unretained.
    if (c.bridge) p.retain = false;
    else return protocolError(c, Reason::RetainNotSupported, "retained PUBLISH while retain is unavailable");  // [MQTT-3.2.2-14]
  }

  // Topic alias (§3.3.2.3.4).
  if (v5 && p.props.topic_alias) {
    const uint16_t alias = *p.props.topic_alias;
    if (alias == 0 || alias > cfg_.topic_alias_maximum)  // [MQTT-3.3.2-8/9]
      return protocolError(c, Reason::TopicAliasInvalid, "topic alias out of range");
    auto& table = c.aliasTables().in;
    if (table.size() <= alias) table.resize(size_t(alias) + 1);
    if (p.topic.empty()) {
      if (table[alias].empty())
        return protocolError(c, Reason::ProtocolError, "unknown topic alias");
      p.topic = table[alias];
    } else {
      table[alias] = p.topic;
    }
    p.props.topic_alias.reset();
  }
  if (!mqtt::validTopicName(p.topic, cfg_.max_topic_levels))  // [MQTT-3.3.2-2]
    return protocolError(c, Reason::TopicNameInvalid, "invalid topic name in PUBLISH");
  if (v5 && p.props.response_topic && !mqtt::validTopicName(*p.props.response_topic))  // [MQTT-3.3.2-14]
    return protocolError(c, Reason::ProtocolError, "Response Topic is not a valid topic name");
  if (v5 && !p.props.subscription_identifiers.empty())  // [MQTT-3.3.4-6]
    return protocolError(c, Reason::ProtocolError, "subscription identifier in PUBLISH from a client");

  if (p.qos == 2) {
    // Method B of §4.3.3: deliver on receipt, remember the packet id until
    // PUBREL, so a duplicate PUBLISH is acknowledged but not delivered again.
    if (s.inbound_qos2.count(p.packet_id)) {
      mqtt::Ack rec;
      rec.type = mqtt::PacketType::Pubrec;
      rec.packet_id = p.packet_id;
      mqtt::encode(rec, c.version, c.out());
      return;
    }
    if (s.inbound_qos2.size() >= cfg_.max_inflight)  // [MQTT-3.3.4-7]
      return protocolError(c, Reason::ReceiveMaximumExceeded, "too many QoS 2 messages in flight");
  }

  if (c.bridge) {
    // From the remote side of our bridge: its in rules name the local topic
    // (the operator configured it: no ACL).
    std::string local;
    if (!c.bridge->topics().toLocal(p.topic, local)) {
      LOG_DEBUG("bridge %s: '%s' matches no in rule, dropped", c.bridge->name().c_str(), p.topic.c_str());
      return acknowledgeDropped(c, s, p);
    }
    p.topic = std::move(local);
    ++c.bridge->counters.received;
  }

  // $delayed/<N>/<topic> (src/delayed/): from here on the topic is the
  // target, for the ACL too; the message is stored now, published when due.
  int64_t delayed_due = -1;
  if (delayed_.claims(p.topic)) {
    const Reason why = delayed_.resolve(p.topic, delayed_due);
    if (why != Reason::Success) return refuseDelayed(c, s, p, why, p.topic);
  }

  if (!c.bridge && !sessions_.mayPublish(s, p.topic)) return refusePublish(c, s, p);  // ACL

  ++stats_.messages_received;
  ++stats_.received_by_qos[p.qos];
  monitor_.onPublish(p.topic);
  msg->topic = std::move(p.topic);
  msg->payload = std::move(p.payload);
  msg->qos = p.qos;
  msg->retain = p.retain;
  // [MQTT-3.3.2-5] the publisher's lifetime, or the configured default for
  // the topic (message_expiry:), capped by mqtt.max_message_expiry.
  if (const auto life = cfg_.message_expiry.lifetime(msg->topic, p.props.message_expiry_interval))
    msg->expires_at_ms = clock_.wallMs() + int64_t(*life) * 1000;
  if (v5) {
    p.props.message_expiry_interval.reset();
    if (!p.props.empty()) msg->props = std::make_shared<const mqtt::Properties>(std::move(p.props));
  }
  msg->origin = s.clientId();
  msg->from_bridge = c.bridge || s.peer_bridge;
  msg->id = durable_.newMessageId();
  MessagePtr m = std::move(msg);
  if (delayed_due >= 0) return scheduleDelayed(c, s, p, m, delayed_due);

  // [MQTT-3.3.1-5..7] retained: store (or clear with an empty payload).
  const uint32_t retained_refs = m->retain ? router_.retain(m) : 0;
  RouteResult routed = router_.route(m, retained_refs);
  const size_t n = routed.matched;
  // A retained copy, or a queued one, must be on disk before the PUBACK;
  // copies only in flight to durable receivers need not (AckGate).
  if (fc && p.qos == 1 && retained_refs == 0) fc->early_ack = std::move(routed.early_ack);

  if (p.qos == 1) {
    // In a cluster, "no matching" means on no node.
    if (v5 && n == 0 && !cluster_.othersWant(m->topic)) {
      mqtt::Ack ack;
      ack.type = mqtt::PacketType::Puback;
      ack.packet_id = p.packet_id;
      ack.reason = Reason::NoMatchingSubscribers;
      mqtt::encode(ack, c.version, c.out());
    } else {
      mqtt::encodeAck(c.out(), mqtt::PacketType::Puback, p.packet_id);
    }
  } else if (p.qos == 2) {
    s.inbound_qos2.insert(p.packet_id);
    if (durable_.enabled() && s.stored) durable_.batch().putInboundQos2(s.clientId(), p.packet_id);
    mqtt::Ack rec;
    rec.type = mqtt::PacketType::Pubrec;
    rec.packet_id = p.packet_id;
    if (v5 && n == 0 && !cluster_.othersWant(m->topic)) rec.reason = Reason::NoMatchingSubscribers;
    mqtt::encode(rec, c.version, c.out());
  }
}

void Broker::handleAck(Connection& c, const mqtt::Frame& f) {
  using mqtt::PacketType;
  using mqtt::Reason;
  Session& s = *c.session;
  if (f.type == PacketType::Puback && f.flags == 0 && f.body_len == 2) {
    // The usual PUBACK: a packet id, nothing else (any protocol level).
    const uint16_t id = static_cast<uint16_t>(f.body[0] << 8 | f.body[1]);
    if (id == 0) return protocolError(c, Reason::MalformedPacket, "malformed acknowledgement");
    return handlePuback(s, id);
  }
  mqtt::Ack a;
  Reason rc = mqtt::parse(f, c.version, a);
  if (rc != Reason::Success) return protocolError(c, rc, "malformed acknowledgement");
  const bool v5 = c.version == mqtt::Version::V5;

  switch (a.type) {
    case PacketType::Pubrel: {
      // Inbound QoS 2, step 2: release the packet id, answer PUBCOMP.
      mqtt::Ack comp;
      comp.type = PacketType::Pubcomp;
      comp.packet_id = a.packet_id;
      if (s.inbound_qos2.erase(a.packet_id)) {
        if (durable_.enabled() && s.stored) durable_.batch().deleteInboundQos2(s.clientId(), a.packet_id);
      } else if (v5) {
        comp.reason = Reason::PacketIdentifierNotFound;
      }
      mqtt::encode(comp, c.version, c.out());
      return;
    }
    case PacketType::Puback: return handlePuback(s, a.packet_id);
    case PacketType::Pubrec: {
      InflightOut* inf = s.findInflight(a.packet_id);
      mqtt::Ack rel;
      rel.type = PacketType::Pubrel;
      rel.packet_id = a.packet_id;
      if (!inf || inf->d.qos != 2 || inf->fresh) {
        if (v5) rel.reason = Reason::PacketIdentifierNotFound;
        mqtt::encode(rel, c.version, c.out());
        return;
      }
      if (v5 && static_cast<uint8_t>(a.reason) >= 0x80) {
        // §4.3.3: a failure PUBREC ends the exchange; the id is free again.
        sessions_.completeDelivery(s, a.packet_id);
        return;
      }
      inf->released = true;
      const bool stored = inf->d.seq != 0;
      if (stored) sessions_.saveQueueEntry(s, inf->d, a.packet_id, true);
      // One waiting to be sent again on this connection (Sessions::resume)
      // gets its PUBREL in its turn. That is after this PUBREC is stored
      // too: this frame's hold (dispatchHolding) keeps whatever the
      // connection writes after it until then.
      if (!inf->unsent) mqtt::encode(rel, c.version, c.out());
      if (stored) sessions_.storeIdsAhead(s);  // `inf` may move
      return;
    }
    case PacketType::Pubcomp: {
      InflightOut* inf = s.findInflight(a.packet_id);
      if (!inf || !inf->released) {
        LOG_DEBUG("client %s: PUBCOMP for unknown packet id %u", s.clientId().c_str(), a.packet_id);
        return;
      }
      sessions_.completeDelivery(s, a.packet_id);
      return;
    }
    default:
      return;
  }
}

void Broker::handlePuback(Session& s, uint16_t packet_id) {
  InflightOut* inf = s.findInflight(packet_id);
  if (!inf || inf->d.qos != 1) {
    LOG_DEBUG("client %s: PUBACK for unknown packet id %u", s.clientId().c_str(), packet_id);
    return;
  }
  sessions_.completeDelivery(s, packet_id, inf);
}

void Broker::acknowledgeDropped(Connection& c, Session& s, const mqtt::Publish& p) {
  if (p.qos == 0) return;
  mqtt::Ack ack;
  ack.type = p.qos == 1 ? mqtt::PacketType::Puback : mqtt::PacketType::Pubrec;
  ack.packet_id = p.packet_id;
  if (c.version == mqtt::Version::V5) ack.reason = mqtt::Reason::NoMatchingSubscribers;
  if (p.qos == 2) s.inbound_qos2.insert(p.packet_id);  // PUBREL will follow
  mqtt::encode(ack, c.version, c.out());
}

void Broker::refusePublish(Connection& c, Session& s, const mqtt::Publish& p) {
  LOG_INFO("client %s%s%s: PUBLISH to '%s' denied by the ACL", s.clientId().c_str(),
           s.username ? " user " : "", s.username ? s.username->c_str() : "", p.topic.c_str());
  // [MQTT-3.3.5-2] MQTT 3.1.1 has no way to say no: the message is
  // acknowledged as usual and dropped. MQTT 5 answers 0x87 Not authorized.
  const bool v5 = c.version == mqtt::Version::V5;
  if (p.qos == 0) return;
  mqtt::Ack ack;
  ack.type = p.qos == 1 ? mqtt::PacketType::Puback : mqtt::PacketType::Pubrec;
  ack.packet_id = p.packet_id;
  if (v5) {
    ack.reason = mqtt::Reason::NotAuthorized;  // a failed PUBREC ends the exchange
  } else if (p.qos == 2) {
    s.inbound_qos2.insert(p.packet_id);  // PUBREL will follow
  }
  mqtt::encode(ack, c.version, c.out());
}

}  // namespace petrel
