// DISCONNECT from clients (§3.14), will messages (§3.1.2.5, §3.1.3.2) and
// the end of a session (§4.1).
#include "mqtt/decoder.h"
#include "src/broker/broker.h"
#include "src/util/log.h"

namespace petrel {

void Broker::handleDisconnect(Connection& c, const mqtt::Frame& f) {
  using mqtt::Reason;
  Session& s = *c.session;
  mqtt::Disconnect d;
  Reason rc = mqtt::parse(f, c.version, d);
  if (rc != Reason::Success) return protocolError(c, rc, "malformed DISCONNECT");
  if (d.props.session_expiry_interval) {
    // [MQTT-3.14.2-2] a session that was to end with the connection may not
    // be extended at DISCONNECT.
    if (s.expiry_interval == 0 && *d.props.session_expiry_interval != 0)
      return protocolError(c, Reason::ProtocolError, "session expiry set at DISCONNECT after 0 at CONNECT");
    s.expiry_interval = std::min(*d.props.session_expiry_interval, cfg_.max_session_expiry);
  }
  // [MQTT-3.14.4-3] a normal DISCONNECT discards the will; reason 0x04
  // asks for it to be published.
  c.graceful = d.reason != Reason::DisconnectWithWill;
  c.closeWhenPeerDoes(uv_now(loop_));
}

void Broker::publishWill(Session& s) {
  if (!s.will) return;
  mqtt::Will w = std::move(*s.will);
  s.will.reset();
  s.will_at_ms = 0;
  if (!mayPublish(s, w.topic)) {  // ACL: the will is a publish by its client
    LOG_INFO("client %s: will on '%s' denied by the ACL", s.clientId().c_str(), w.topic.c_str());
    return;
  }
  auto msg = std::make_shared<Message>();
  msg->topic = std::move(w.topic);
  msg->payload = std::move(w.payload);
  msg->qos = w.qos;
  msg->retain = w.retain;
  if (w.props.message_expiry_interval) {
    msg->expires_at_ms = nowMs() + int64_t(*w.props.message_expiry_interval) * 1000;
    w.props.message_expiry_interval.reset();
  }
  w.props.will_delay_interval.reset();
  msg->props = std::move(w.props);
  msg->has_props = !msg->props.empty();
  msg->origin = s.clientId();
  LOG_INFO("client %s: publishing will on '%s'", s.clientId().c_str(), msg->topic.c_str());
  if (store_) msg->id = next_msg_id_++;
  MessagePtr m = std::move(msg);
  const uint32_t refs = m->retain && cfg_.retain_available ? retain(m) : 0;
  route(m, refs);
}

void Broker::endSession(Session* s) {
  // A delayed will is published when its session ends (§3.1.3.2.2).
  if (s->will) publishWill(*s);
  if (s->has_shared) {
    // Group messages still with this member: unacknowledged ones go back to
    // their group; a QoS 2 message it already has (PUBREC received) is done.
    returnToGroups(*s, true);
    for (const auto& f : s->inflight)
      if (f.d.group) groupRelease(*f.d.group, f.d);
    s->inflight.clear();
  }
  for (const auto& e : s->subscriptions) unsubscribeKey(*s, e.key);
  if (s->conn) {
    s->conn->session = nullptr;
    s->conn = nullptr;
  }
  if (s->stored && store_) store_->batch().deleteSession(s->clientId());
  if (store_) forgetSession(s);
  if (s->dropped) LOG_NOTICE("session %s ended; %llu messages were dropped for it",
                             s->clientId().c_str(), static_cast<unsigned long long>(s->dropped));
  const std::string id = s->clientId();  // the key dies with the session
  sessions_.erase(id);
}

}  // namespace petrel
