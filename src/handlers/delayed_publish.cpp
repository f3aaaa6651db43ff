// PUBLISH to `$delayed/<N>/<topic>` (src/delayed/): handlePublish resolves
// the target topic (the ACL checks it) and builds the message; here it is
// handed to DelayedPublish and answered, or refused.
#include "mqtt/encoder.h"
#include "src/broker/broker.h"
#include "src/util/log.h"

namespace petrel {

void Broker::scheduleDelayed(Connection& c, Session& s, const mqtt::Publish& p, const MessagePtr& m,
                             int64_t due_ms) {
  const mqtt::Reason why = delayed_.schedule(m, due_ms);
  if (why != mqtt::Reason::Success) return refuseDelayed(c, s, p, why, m->topic);
  // Acknowledged as any PUBLISH; the store write above holds the answer
  // until it has committed (Broker::dispatchHolding). Who will receive it
  // is not known yet: no 0x10 No matching subscribers.
  if (p.qos == 0) return;
  mqtt::Ack ack;
  ack.type = p.qos == 1 ? mqtt::PacketType::Puback : mqtt::PacketType::Pubrec;
  ack.packet_id = p.packet_id;
  if (p.qos == 2) {
    s.inbound_qos2.insert(p.packet_id);
    if (durable_.enabled() && s.stored) durable_.batch().putInboundQos2(s.clientId(), p.packet_id);
  }
  mqtt::encode(ack, c.version, c.out());
}

void Broker::refuseDelayed(Connection& c, Session& s, const mqtt::Publish& p, mqtt::Reason why,
                           std::string_view topic) {
  // As refusePublish: MQTT 5 answers with the reason (0x90 Topic Name
  // invalid, 0x97 Quota exceeded); MQTT 3.1.1 cannot say no [MQTT-3.3.5-2],
  // so the message is acknowledged as usual and dropped. Counted as refused
  // by DelayedPublish either way.
  const bool v5 = c.version == mqtt::Version::V5;
  LOG_INFO("client %s: delayed PUBLISH to '%.*s' refused (%s)%s", s.clientId().c_str(),
           static_cast<int>(topic.size()), topic.data(), std::string(mqtt::reasonName(why)).c_str(),
           v5 ? "" : "; acknowledged and dropped (MQTT 3.1.1)");
  if (p.qos == 0) return;
  mqtt::Ack ack;
  ack.type = p.qos == 1 ? mqtt::PacketType::Puback : mqtt::PacketType::Pubrec;
  ack.packet_id = p.packet_id;
  if (v5) {
    ack.reason = why;  // a failed PUBREC ends the exchange
  } else if (p.qos == 2) {
    s.inbound_qos2.insert(p.packet_id);  // PUBREL will follow
  }
  mqtt::encode(ack, c.version, c.out());
}

}  // namespace petrel
