// Connection deadlines, one timer per connection (Connection::timer),
// armed at the earliest of them and re-armed when it fires:
// * no CONNECT within kConnectTimeoutMs of the last byte received; a
//   CONNECT the broker holds (its password being checked, its session on
//   its way from another node: Connection::auth_ticket) is not the client's
//   delay, and is answered Server unavailable only after
//   limits.max_connect_wait (by default 120 s, beyond the longest wait the
//   cluster allows itself, SessionMoves::kAdoptWaitMs),
// * no TLS handshake within the listener's tls.handshake_timeout_ms,
// * no WebSocket upgrade within its websocket.handshake_timeout_ms of the
//   accept,
// * keep alive: nothing received for 1.5 times the interval [MQTT-3.1.2-24],
// * after the client's DISCONNECT, a close within kLingerMs even if the
//   client does not close first; a half-closed socket within
//   Connection::kHalfCloseLingerMs.
// Receiving does not touch the timer: when it fires early (bytes came in
// meanwhile) it is armed again from last_rx_ms.
#include "src/broker/broker.h"
#include "src/util/log.h"
#include "tls/tls_session.h"

namespace petrel {

namespace {
constexpr uint64_t kConnectTimeoutMs = 10'000;
constexpr uint64_t kLingerMs = 1000;
// A closing connection still writing its last output is looked at again
// this often (it becomes half-closed, or its handle closes).
constexpr uint64_t kClosingRecheckMs = 1000;
}  // namespace

void Broker::armConnectionTimer(Connection& c) {
  if (!c.timer.armed()) c.timer.bind(&Broker::onConnectionTimer, &c);
  uint64_t due;
  // +1: each limit is "more than", as the checks in connectionTimeout.
  if (c.lingering()) {
    due = c.last_rx_ms + kLingerMs + 1;
  } else if (c.halfClosed()) {
    due = c.last_rx_ms + Connection::kHalfCloseLingerMs + 1;
  } else if (c.closing()) {
    due = timers_.now() + kClosingRecheckMs;
  } else if (!c.connected && c.auth_ticket) {
    due = c.last_rx_ms + connectHeldMs() + 1;  // its input is paused meanwhile
  } else if (!c.connected) {
    due = c.last_rx_ms + kConnectTimeoutMs + 1;
    if (c.tlsHandshaking() && c.listener)
      due = std::min(due, c.accepted_ms + c.listener->handshake_timeout_ms + 1);
    if (c.listener && c.listener->websocket && !c.handshakeDone())
      due = std::min(due, c.accepted_ms + c.listener->websocket->handshake_timeout_ms + 1);
  } else if (c.keepalive) {
    due = c.last_rx_ms + uint64_t(c.keepalive) * 1500 + 1;
  } else {
    timers_.cancel(c.timer);
    return;
  }
  timers_.arm(c.timer, due);
}

void Broker::onConnectionTimer(Timer& t) {
  Connection& c = *t.owner<Connection>();
  c.broker().connectionTimeout(c);
}

void Broker::connectionTimeout(Connection& c) {
  const uint64_t now = timers_.now();
  if (c.lingering() && now - c.last_rx_ms > kLingerMs) c.closeNow();
  if (c.halfClosed() && now - c.last_rx_ms > Connection::kHalfCloseLingerMs) c.closeNow();
  if (c.handleClosed()) return;  // freed once the close completes
  if (!c.closing()) {
    if (!c.connected && c.auth_ticket) {
      if (now - c.last_rx_ms > connectHeldMs()) {
        LOG_WARN("client from %s: its CONNECT waited %u s for this broker (limits.max_connect_wait); "
                 "answered Server unavailable",
                 c.peer().c_str(), cfg_.max_connect_wait);
        forgetHeldConnect(c);
        ++stats_.connections_refused[static_cast<size_t>(Refusal::Other)];
        sendConnackError(c, c.version, mqtt::Reason::ServerUnavailable);
      }
    } else if (!c.connected) {
      if (!handshakeTimedOut(c, now) && now - c.last_rx_ms > kConnectTimeoutMs) {
        // A socket that never sends CONNECT is closed after a grace period.
        LOG_INFO("closing %s: no CONNECT within %llu s", c.peer().c_str(),
                 static_cast<unsigned long long>(kConnectTimeoutMs / 1000));
        c.closeAfterFlush();
      }
    } else if (c.keepalive && now - c.last_rx_ms > uint64_t(c.keepalive) * 1500) {
      LOG_INFO("client %s: keep alive timeout (%us)", c.session ? c.session->clientId().c_str() : "?",
               c.keepalive);
      c.disconnect(mqtt::Reason::KeepAliveTimeout);
    }
  }
  if (!c.handleClosed() && !shutting_down_) armConnectionTimer(c);
}

bool Broker::handshakeTimedOut(Connection& c, uint64_t now) {
  if (!c.listener) return false;
  if (c.tlsHandshaking() && now - c.accepted_ms > c.listener->handshake_timeout_ms) {
    LOG_NOTICE("closing %s: no TLS handshake within %u ms", c.peer().c_str(),
               c.listener->handshake_timeout_ms);
    c.closeAfterFlush();
    return true;
  }
  const WebSocketConfig* ws = c.listener->websocket;
  if (ws && !c.handshakeDone() && now - c.accepted_ms > ws->handshake_timeout_ms) {
    LOG_NOTICE("closing %s: no WebSocket handshake within %u ms", c.peer().c_str(), ws->handshake_timeout_ms);
    c.closeAfterFlush();
    return true;
  }
  return false;
}

}  // namespace petrel
