#include "src/broker/broker.h"

#include <sys/time.h>

#include "mqtt/encoder.h"
#include "src/util/log.h"

namespace petrel {

namespace {
constexpr size_t kReadBufferSize = 256 * 1024;
constexpr uint64_t kSweepIntervalMs = 250;
}  // namespace

Broker::Broker(uv_loop_t* loop, Config cfg)
    : loop_(loop), cfg_(std::move(cfg)), read_buf_(kReadBufferSize) {}

Broker::~Broker() = default;

int64_t Broker::nowMs() const {
  timeval tv;
  gettimeofday(&tv, nullptr);
  return int64_t(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
}

bool Broker::start(std::string& err) {
  if (!setupSecurity(err)) return false;
  for (const auto& l : cfg_.listeners) {
    sockaddr_storage addr{};
    if (uv_ip4_addr(l.address.c_str(), l.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
        uv_ip6_addr(l.address.c_str(), l.port, reinterpret_cast<sockaddr_in6*>(&addr)) != 0) {
      err = "listener " + l.address + ":" + std::to_string(l.port) + ": not an IP address";
      return false;
    }
    auto server = std::make_unique<uv_tcp_t>();
    uv_tcp_init(loop_, server.get());
    server->data = this;
    int rc = uv_tcp_bind(server.get(), reinterpret_cast<sockaddr*>(&addr), 0);
    if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(server.get()), 1024, &Broker::onConnection);
    if (rc != 0) {
      err = "listener " + l.address + ":" + std::to_string(l.port) + ": " + uv_strerror(rc);
      uv_close(reinterpret_cast<uv_handle_t*>(server.release()),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
      return false;
    }
    LOG_NOTICE("listening on %s port %u", l.address.c_str(), l.port);
    listeners_.push_back(std::move(server));
  }
  started_ms_ = uv_now(loop_);
  next_sys_ms_ = started_ms_;
  uv_timer_init(loop_, &sweep_timer_);
  sweep_timer_.data = this;
  uv_timer_start(&sweep_timer_, &Broker::onSweep, kSweepIntervalMs, kSweepIntervalMs);
  // Output is flushed once per loop turn: after I/O callbacks (check) and
  // after timers (prepare, before the loop blocks).
  uv_check_init(loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, &Broker::onCheck);
  uv_prepare_init(loop_, &prepare_);
  prepare_.data = this;
  uv_prepare_start(&prepare_, &Broker::onPrepare);
  return true;
}

void Broker::shutdown() {
  if (shutting_down_) return;
  shutting_down_ = true;
  LOG_NOTICE("shutting down: closing %zu connections", connections_.size());
  for (auto& l : listeners_)
    uv_close(reinterpret_cast<uv_handle_t*>(l.release()),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
  listeners_.clear();
  stopSecurity();
  auto conns = connections_;
  for (Connection* c : conns) c->disconnect(mqtt::Reason::ServerShuttingDown);
  flushAll();
  uv_timer_stop(&sweep_timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&sweep_timer_), nullptr);
  uv_check_stop(&check_);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_prepare_stop(&prepare_);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  // The commit notifier stays open (unreferenced, so the loop can end)
  // until finish(): the writer thread may still signal it.
  if (store_) uv_unref(reinterpret_cast<uv_handle_t*>(&commit_async_));
}

void Broker::onConnection(uv_stream_t* server, int status) {
  auto* b = static_cast<Broker*>(server->data);
  if (status < 0) {
    LOG_WARN("accept failed: %s", uv_strerror(status));
    return;
  }
  auto* c = new Connection(*b, b->cfg_.max_packet_size);
  c->index = b->connections_.size();
  b->connections_.push_back(c);
  ++b->stats_.connections_total;
  b->attachListener(*c, server);
  c->start(server);
}

void Broker::onConnectionLost(Connection& c) {
  ++closing_connections_;
  Session* s = c.session;
  if (c.dropped_qos0)
    LOG_NOTICE("client %s: %llu QoS 0 messages were dropped for it while its output was over budget",
               s ? s->clientId().c_str() : c.peer().c_str(), static_cast<unsigned long long>(c.dropped_qos0));
  if (!s) return;
  c.session = nullptr;
  if (s->conn != &c) return;  // taken over already
  s->conn = nullptr;
  if (s->has_shared) returnToGroups(*s);
  LOG_INFO("client %s disconnected%s", s->clientId().c_str(), c.graceful ? "" : " unexpectedly");
  if (!c.graceful && s->will) {
    uint32_t delay = s->will->props.will_delay_interval.value_or(0);
    if (delay == 0 || s->expiry_interval == 0) {
      publishWill(*s);
    } else {
      // §3.1.3.2.2: the will waits for the delay or the session's end,
      // whichever comes first; a reconnect in between cancels it.
      s->will_at_ms = nowMs() + int64_t(delay) * 1000;
    }
  } else if (c.graceful) {
    s->will.reset();
  }
  if (s->expiry_interval == 0) {
    endSession(s);
    return;
  }
  if (s->expiry_interval != 0xFFFFFFFF) s->expires_at_ms = nowMs() + int64_t(s->expiry_interval) * 1000;
  if (durable(*s)) {
    saveSession(*s);
    scheduleEvict(*s);
  }
}

void Broker::onConnectionClosed(Connection* c) {
  if (closing_connections_) --closing_connections_;
  // Swap-remove from the connection list.
  const size_t i = c->index;
  if (i < connections_.size() && connections_[i] == c) {
    connections_[i] = connections_.back();
    connections_[i]->index = i;
    connections_.pop_back();
  }
  for (auto& d : dirty_)
    if (d == c) d = nullptr;
  output_total_ -= std::min<uint64_t>(output_total_, c->accounted_output);
  if (c->accounted_output > kOutputHighWater && output_congested_) --output_congested_;

  if (c->in_held_list) {
    for (size_t j = 0; j < held_conns_.size(); ++j) {
      if (held_conns_[j] == c) {
        held_conns_[j] = held_conns_.back();
        held_conns_.pop_back();
        break;
      }
    }
  }
  delete c;
}

void Broker::onWritable(Connection& c) {
  if (c.session && c.connected) {
    pump(*c.session);
    dispatchMemberGroups(*c.session);
  }
}

void Broker::flushAll() {
  // Group commit: everything this loop turn wrote to the store goes to the
  // writer thread as one batch.
  if (store_) {
    store_->submit();
    if (gates_ready_) {
      gates_ready_ = false;
      releaseHeld();
    }
  }
  // A flush can make more connections dirty (a write error closes and a
  // will is published), so loop until stable.
  while (!dirty_.empty()) {
    std::vector<Connection*> batch;
    batch.swap(dirty_);
    for (Connection* c : batch) {
      if (!c) continue;
      c->flush();
      accountOutput(*c);
    }
  }
}

void Broker::onCheck(uv_check_t* h) { static_cast<Broker*>(h->data)->flushAll(); }
void Broker::onPrepare(uv_prepare_t* h) { static_cast<Broker*>(h->data)->flushAll(); }

void Broker::onSweep(uv_timer_t* t) { static_cast<Broker*>(t->data)->sweep(); }

void Broker::sweep() {
  const uint64_t now = uv_now(loop_);
  if (cfg_.sys_interval && now >= next_sys_ms_) {
    next_sys_ms_ = now + uint64_t(cfg_.sys_interval) * 1000;
    publishSys();
  }
  // Keep alive: [MQTT-3.1.2-24] one and a half times the interval.
  for (size_t i = 0; i < connections_.size(); ++i) {
    Connection* c = connections_[i];
    if (c->lingering() && now - c->last_rx_ms > 1000) c->closeNow();
    if (c->halfClosed() && now - c->last_rx_ms > Connection::kHalfCloseLingerMs) c->closeNow();
    if (c->closing()) continue;
    if (!c->connected) {
      if (handshakeTimedOut(*c, now)) continue;
      // A socket that never sends CONNECT is closed after a grace period.
      if (now - c->last_rx_ms > 10'000) {
        LOG_INFO("closing %s: no CONNECT within 10 s", c->peer().c_str());
        c->closeAfterFlush();
      }
      continue;
    }
    if (c->keepalive && now - c->last_rx_ms > uint64_t(c->keepalive) * 1500) {
      LOG_INFO("client %s: keep alive timeout (%us)",
               c->session ? c->session->clientId().c_str() : "?", c->keepalive);
      c->disconnect(mqtt::Reason::KeepAliveTimeout);
    }
  }
  // Delayed wills and session expiry of offline sessions.
  const int64_t wall = nowMs();
  std::vector<Session*> expired;
  for (auto& [id, s] : sessions_) {
    if (s->conn) continue;
    if (s->will && s->will_at_ms && wall >= s->will_at_ms) {
      publishWill(*s);
      if (s->stored) saveSession(*s);
    }
    if (s->expires_at_ms && wall >= s->expires_at_ms) expired.push_back(s.get());
  }
  for (Session* s : expired) {
    LOG_INFO("session %s expired", s->clientId().c_str());
    endSession(s);
  }
}

void Broker::protocolError(Connection& c, mqtt::Reason r, const char* what) {
  LOG_NOTICE("closing %s (%s): %s [%s]", c.peer().c_str(),
             c.session ? c.session->clientId().c_str() : "not connected", what,
             std::string(mqtt::reasonName(r)).c_str());
  c.disconnect(r);
}

void Broker::onFramingError(Connection& c, bool too_large) {
  if (too_large) {
    // §3.2.2.3.6 / §4.13: a packet above the Maximum Packet Size is
    // answered with reason 0x95. Before CONNECT the CONNACK carries it.
    if (!c.connected) {
      sendConnackError(c, mqtt::Version::V5, mqtt::Reason::PacketTooLarge);
      return;
    }
    protocolError(c, mqtt::Reason::PacketTooLarge, "packet exceeds the maximum packet size");
  } else {
    protocolError(c, mqtt::Reason::MalformedPacket, "malformed remaining length");
  }
}

void Broker::onFrame(Connection& c, const mqtt::Frame& f) {
  using mqtt::PacketType;
  // "Acknowledged means stored": whatever this packet made the broker
  // write to the store, the answer to it (PUBACK, PUBREC, PUBCOMP, SUBACK,
  // CONNACK) waits until that batch has committed. PUBREC from the client
  // holds our PUBREL: once the client has seen PUBREL it forgets the packet
  // id, so a restart must not send that PUBLISH again [MQTT-4.3.3]. The
  // client's PUBACK and PUBCOMP only delete what we kept for it: nothing we
  // send next depends on those deletes having reached the disk, so they
  // hold nothing back (a subscriber draining its queue is not paced by the
  // disk).
  FrameContext fc;
  if (!store_ || f.type == PacketType::Puback || f.type == PacketType::Pubcomp ||
      f.type == PacketType::Pingreq)
    return dispatch(c, f, fc);
  const Connection::OutMark mark = c.outMark();
  const size_t ops = store_->batch().count();
  dispatch(c, f, fc);
  if (store_->batch().count() != ops && !c.closing()) holdOutput(c, mark, fc.early_ack);
}

void Broker::dispatch(Connection& c, const mqtt::Frame& f, FrameContext& fc) {
  using mqtt::PacketType;
  if (!c.connected) {
    // [MQTT-3.1.0-1] the first packet must be CONNECT.
    if (f.type != PacketType::Connect) {
      LOG_NOTICE("closing %s: first packet is %s, not CONNECT", c.peer().c_str(),
                 std::string(mqtt::packetTypeName(f.type)).c_str());
      c.closeAfterFlush();
      return;
    }
    handleConnect(c, f);
    return;
  }
  switch (f.type) {
    case PacketType::Publish: handlePublish(c, f, fc); break;
    case PacketType::Puback:
    case PacketType::Pubrec:
    case PacketType::Pubrel:
    case PacketType::Pubcomp: handleAck(c, f); break;
    case PacketType::Subscribe: handleSubscribe(c, f); break;
    case PacketType::Unsubscribe: handleUnsubscribe(c, f); break;
    case PacketType::Pingreq:
      if (mqtt::parseEmpty(f) != mqtt::Reason::Success) {
        protocolError(c, mqtt::Reason::MalformedPacket, "malformed PINGREQ");
        return;
      }
      mqtt::encodePingresp(c.out());
      break;
    case PacketType::Disconnect: handleDisconnect(c, f); break;
    case PacketType::Connect:
      // [MQTT-3.1.0-2] a second CONNECT is a protocol error.
      protocolError(c, mqtt::Reason::ProtocolError, "second CONNECT");
      break;
    case PacketType::Auth:
      // Enhanced authentication is not offered (no Authentication Method
      // is accepted in CONNECT), so AUTH is never expected [MQTT-4.12.0-1].
      protocolError(c, mqtt::Reason::ProtocolError, "unexpected AUTH");
      break;
    default:
      protocolError(c, mqtt::Reason::ProtocolError, "packet type not sent by clients");
      break;
  }
}

}  // namespace petrel
