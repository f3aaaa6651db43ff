// DISCONNECT from clients (§3.14).
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

}  // namespace petrel
