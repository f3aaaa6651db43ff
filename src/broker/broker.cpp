#include "src/broker/broker.h"

#include "mqtt/encoder.h"
#include "src/util/log.h"

namespace petrel {

namespace {
constexpr size_t kReadBufferSize = 256 * 1024;
// The first $SYS update after start-up; then every mqtt.sys_interval.
constexpr uint64_t kFirstSysMs = 250;
// The sweeps of expired queue entries: four a second, each at most a
// quarter of a second's budget, so that a long run of expired entries
// holds the loop a few milliseconds at a time.
constexpr uint64_t kExpirySweepMs = 250;
}  // namespace

Broker::Broker(uv_loop_t* loop, Config cfg)
    : BrokerParts(loop, std::move(cfg)),
      loop_(loop),
      io_(loop, cfg_.workers),
      sys_({cfg_, stats_, clock_, durable_, router_, sessions_, budget_, connections_, delayed_, monitor_}),
      bridges_({cfg_, sessions_, router_, durable_, timers_, loop, [this] { return newConnection(); },
                [this](Connection& c) { armConnectionTimer(c); }}),
      monitor_({cfg_, stats_, timers_, durable_, router_, sessions_, budget_, connections_, delayed_, bridges_.all(),
                cluster_, io_}),
      http_(loop, timers_, cfg_.http, httpEndpoints()),
      cluster_({cfg_.cluster, loop, router_, durable_, clock_}),
      adoption_({cluster_, sessions_, router_, durable_, delayed_, timers_, clock_, cfg_.data_dir + "/adopting"}),
      moves_({cluster_, sessions_, router_, durable_, timers_, clock_, adoption_}),
      sys_timer_(&Broker::onSysTimer, this),
      expiry_sweep_timer_(&Broker::onExpirySweepTimer, this),
      read_buf_(kReadBufferSize) {
  // Before any subscription exists: each one counts as interest.
  cluster_.attach();
  cluster_.setLocalCounts([this] { return Cluster::LocalCounts{stats_.clients_connected, sessions_.size()}; });
  cluster_.setTakeOver(
      [this](const std::string& id) {
        const Session* s = sessions_.find(id);
        return s && s->conn;
      },
      [this](const std::string& id, const std::string& by) {
        Session* s = sessions_.find(id);
        if (!s || !s->conn) return;
        // As a takeover here, but the session stays on this node, offline
        // (it does not move to the other node): the connection ends
        // abnormally (its will, the session's expiry).
        LOG_INFO("client %s: session taken over on node %s", s->clientId().c_str(), by.c_str());
        s->conn->disconnect(mqtt::Reason::SessionTakenOver);
      });
  // Another node's copies of a message are in the cluster's stream: its
  // held PUBACK (PUBREC) may go.
  cluster_.setOnStored([this] { holds_.gateOpened(); });
  // A session moving between nodes (src/cluster/session_moves.h): the
  // CONNECT that waited for it goes on.
  cluster_.setOnMove([this](std::string_view body) { moves_.onMessage(body); });
  cluster_.setOnUnanswered([this](uint64_t move) { moves_.unanswered(move); });
  // A down node's sessions taken here (src/cluster/adoption.h): the
  // CONNECTs that waited go on.
  adoption_.setOnDone([this](uint64_t ticket, bool replaced) { resumeWaitingConnect(ticket, replaced); });
  sessions_.setMoveHook([this](Session& s, const Delivery& d) { moves_.delivered(s, d); });
  cluster_.setMoveCounters([this](Cluster::Counters& c) {
    const SessionMoves::Counters m = moves_.counters();
    c.moved_in = m.moved_in;
    c.moved_out = m.moved_out;
    c.moved_messages_in = m.entries_in;
    c.moved_messages_out = m.entries_out;
    c.move_failed = m.failed;
    const Adoption::Counters a = adoption_.counters();
    c.adopted_nodes = a.nodes;
    c.adopted_sessions = a.sessions;
    c.adopted_messages = a.messages;
    c.adopt_failed = a.failed;
  });
  // `replaced`: the same client connected again while it waited; that
  // connection waits for the move instead, this one closes.
  moves_.setOnDone([this](uint64_t ticket, bool replaced) { resumeWaitingConnect(ticket, replaced); });
  groups_.declareQueues();  // before the store's subscriptions join them
}

Broker::~Broker() {
  // The timers' uv handle must be closed before it goes (start-up failed,
  // or the loop never ran).
  if (!timers_.closed()) {
    timers_.close();
    uv_run(loop_, UV_RUN_NOWAIT);
  }
}

bool Broker::start(std::string& err) {
  if (!security_.start(err)) return false;
  // The HTTP side comes up first: its TLS files are checked before any MQTT
  // port opens (no half-started broker), and whoever waits for an MQTT port
  // finds /metrics and /readyz already answering.
  monitor_.start(cfg_.http.enabled);
  if (cfg_.http.enabled && !http_.start(err)) return false;
  if (!io_.start(err)) return false;
  if (io_.sizedBy().empty())
    LOG_INFO("%u event loop%s client connections", io_.loops(), io_.loops() == 1 ? " carries" : "s carry");
  else
    LOG_INFO("%u event loop%s client connections (%s)", io_.loops(), io_.loops() == 1 ? " carries" : "s carry",
             io_.sizedBy().c_str());
  if (!budget_.sizedBy().empty()) LOG_INFO("%s", budget_.sizedBy().c_str());
  if (!cluster_.start(err)) return false;
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
    LOG_NOTICE("listening on %s port %u%s%s", l.address.c_str(), l.port,
               l.websocket ? (l.tls ? ", MQTT over WebSocket over TLS on " : ", MQTT over WebSocket on ") : "",
               l.websocket ? l.websocket->path.c_str() : "");
    listeners_.push_back(std::move(server));
  }
  if (!bridges_.start(err)) return false;
  sys_.start();
  if (cfg_.sys_interval) timers_.armAfter(sys_timer_, kFirstSysMs);
  timers_.armAfter(expiry_sweep_timer_, kExpirySweepMs);
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
  security_.stop();
  bridges_.stop();
  http_.stop();
  monitor_.stop();
  auto conns = connections_;
  for (Connection* c : conns) {
    // Those waiting for their client to close (after its DISCONNECT, or
    // after our last packet) close now: the timers that end the wait stop.
    if (c->lingering() || c->halfClosed())
      c->closeNow();
    else
      c->disconnect(mqtt::Reason::ServerShuttingDown);
  }
  flushAll();
  // What the cluster's stream gave this node and this node has written is
  // acknowledged to the stream before the link closes: the batches
  // submitted so far are committed first. Otherwise the stream gives it
  // again to the node's next run, which queues it a second time.
  if (durable_.enabled() && cluster_.enabled()) {
    durable_.drain();
    cluster_.afterCommit(durable_.committed(), false);
  }
  // After the connections: their wills went to the other nodes too.
  adoption_.stop();  // its threads use the cluster's link
  cluster_.stop();
  io_.stop();  // the worker loops end after their last connection
  timers_.close();
  uv_check_stop(&check_);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  uv_prepare_stop(&prepare_);
  uv_close(reinterpret_cast<uv_handle_t*>(&prepare_), nullptr);
  // The commit notifier stays open (unreferenced, so the loop can end)
  // until finish(): the writer thread may still signal it.
  durable_.unref();
}

HttpServer::Endpoints Broker::httpEndpoints() {
  HttpServer::Endpoints e;
  e.metrics = [this] { return prometheusText(monitor_.snapshot()); };
  e.stats = [this] { return statsJson(monitor_.snapshot()); };
  e.ready = [this](std::string& why) { return ready(why); };
  e.check_password = [this](std::string_view user, std::string_view password) {
    return security_.checkPassword(user, password);
  };
  return e;
}

bool Broker::ready(std::string& why) const {
  if (shutting_down_) why = "shutting down";
  else if (cfg_.persistence && !durable_.enabled()) why = "the store is not open";
  else if (listeners_.size() != cfg_.listeners.size()) why = "the listeners are not up";
  else return true;
  return false;
}

void Broker::onConnection(uv_stream_t* server, int status) {
  auto* b = static_cast<Broker*>(server->data);
  if (status < 0) {
    LOG_WARN("accept failed: %s", uv_strerror(status));
    return;
  }
  Connection* c = b->newConnection();
  ++b->stats_.connections_total;
  const ListenerSecurity* ls = b->listenerOf(server);
  c->listener = ls;
  const tls::TlsContext* tls = ls ? ls->tls.get() : nullptr;
  const WebSocketConfig* ws = ls ? ls->websocket : nullptr;
  if (IoWorker* w = b->io_.pick()) {
    // Its stream stack lives on that loop; on failure c is gone already.
    if (c->startOn(*w, server, tls, ws)) b->armConnectionTimer(*c);
    return;
  }
  c->enableLayers(tls, ws);
  if (c->start(server)) b->armConnectionTimer(*c);
}

Connection* Broker::newConnection() {
  auto* c = new Connection(*this);
  c->index = connections_.size();
  connections_.push_back(c);
  return c;
}

void Broker::forgetHeldConnect(Connection& c) {
  if (!c.auth_ticket) return;
  pending_auth_.erase(c.auth_ticket);  // its answer is dropped when it comes
  waiting_connects_.erase(c.auth_ticket);
  c.auth_ticket = 0;
}

void Broker::onConnectionLost(Connection& c) {
  ++closing_connections_;
  forgetHeldConnect(c);
  if (c.connected && !c.bridge && stats_.clients_connected) --stats_.clients_connected;
  if (!shutting_down_) armConnectionTimer(c);
  Session* s = c.session;
  if (c.bridge) {
    // Out queue first: the session goes offline, then the link plans its
    // reconnect.
    c.session = nullptr;
    if (s && s->conn == &c) sessions_.connectionLost(*s, true);
    bridges_.onLinkLost(c);
    return;
  }
  if (c.dropped_qos0)
    LOG_NOTICE("client %s: %llu QoS 0 messages were dropped for it while its output was over budget",
               s ? s->clientId().c_str() : c.peer().c_str(), static_cast<unsigned long long>(c.dropped_qos0));
  if (!s) return;
  c.session = nullptr;
  if (s->conn != &c) return;  // taken over already
  sessions_.connectionLost(*s, c.graceful);
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
  budget_.remove(*c);
  holds_.remove(*c);
  ack_poller_.remove(*c);
  delete c;
}

void Broker::onWritable(Connection& c) {
  if (c.session && c.connected) {
    sessions_.pump(*c.session);
    groups_.dispatchMemberGroups(*c.session);
  }
}

void Broker::flushAll() {
  groups_.dropEmptied();  // groups emptied during the turn, under their callers
  // Group commit: everything this loop turn wrote to the store goes to the
  // writer thread as one batch.
  cluster_.flushStream();  // QoS 1 and 2 messages for other nodes, a batch per node
  if (durable_.enabled()) durable_.submit();
  holds_.releaseIfGatesOpened(durable_.enabled() ? durable_.committed() : 0);
  // A flush can make more connections dirty (a write error closes and a
  // will is published), so loop until stable.
  // The two lists keep their capacity from turn to turn: a fan-out makes
  // hundreds of connections dirty in every turn.
  while (!dirty_.empty()) {
    std::vector<Connection*> batch = std::move(dirty_);
    dirty_ = std::move(flushed_);
    dirty_.clear();
    for (Connection* c : batch) {
      if (!c) continue;
      c->flush();
      budget_.account(*c);
    }
    batch.clear();
    flushed_ = std::move(batch);
  }
  io_.flush();
}

void Broker::onCheck(uv_check_t* h) { static_cast<Broker*>(h->data)->flushAll(); }
void Broker::onPrepare(uv_prepare_t* h) { static_cast<Broker*>(h->data)->flushAll(); }

void Broker::onSysTimer(Timer& t) {
  auto* b = t.owner<Broker>();
  b->timers_.armAfter(t, uint64_t(b->cfg_.sys_interval) * 1000);
  b->sys_.publish();
  b->bridges_.publishSys();
  b->cluster_.publishSys();
}

void Broker::onExpirySweepTimer(Timer& t) {
  auto* b = t.owner<Broker>();
  b->timers_.armAfter(t, kExpirySweepMs);
  b->groups_.expireHeads(SharedGroups::kExpireBudget);
  b->sessions_.sweepExpiredQueues(Sessions::kSweepBudget);
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
      if (!c.bridge) ++stats_.connections_refused[static_cast<size_t>(Refusal::Protocol)];
      sendConnackError(c, mqtt::Version::V5, mqtt::Reason::PacketTooLarge);
      return;
    }
    protocolError(c, mqtt::Reason::PacketTooLarge, "packet exceeds the maximum packet size");
  } else {
    if (!c.connected && !c.bridge) ++stats_.connections_refused[static_cast<size_t>(Refusal::Protocol)];
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
  // In a cluster with JetStream a QoS 1 or 2 message that other nodes
  // want is acknowledged once the cluster's stream has stored their
  // copies too (src/cluster/stream.h), whether or not this node stores it.
  if ((!durable_.enabled() && !cluster_.holdsAcks()) || f.type == PacketType::Puback ||
      f.type == PacketType::Pubcomp || f.type == PacketType::Pingreq)
    return dispatch(c, f, nullptr);
  dispatchHolding(c, f);
}

void Broker::dispatchHolding(Connection& c, const mqtt::Frame& f) {
  FrameContext fc;
  const Connection::OutMark mark = c.outMark();
  const bool durable = durable_.enabled();
  const size_t ops = durable ? durable_.batch().count() : 0;
  AckGatePtr stored;  // the other nodes' copies in the cluster's stream
  cluster_.collectGate(&stored);
  dispatch(c, f, &fc);
  cluster_.collectGate(nullptr);
  if (c.closing()) return;
  const bool wrote = durable && durable_.batch().count() != ops;
  if (wrote) holds_.hold(c, mark, durable_.awaitedTicket(), fc.early_ack, stored);
  else if (stored) holds_.hold(c, mark, 0, nullptr, stored);
}

void Broker::dispatch(Connection& c, const mqtt::Frame& f, FrameContext* fc) {
  using mqtt::PacketType;
  if (c.bridge) {
    // Our bridge's link: the client side of the protocol. PUBLISH and the
    // acknowledgements go through the same handlers as a client's.
    const bool shared_handler = c.connected && (f.type == PacketType::Publish || f.type == PacketType::Puback ||
                                                f.type == PacketType::Pubrec || f.type == PacketType::Pubrel ||
                                                f.type == PacketType::Pubcomp);
    if (!shared_handler) return bridges_.onPacket(c, f);
  } else if (!c.connected) {
    // [MQTT-3.1.0-1] the first packet must be CONNECT.
    if (f.type != PacketType::Connect) {
      ++stats_.connections_refused[static_cast<size_t>(Refusal::Protocol)];
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

const ListenerSecurity* Broker::listenerOf(uv_stream_t* server) const {
  for (size_t i = 0; i < listeners_.size(); ++i)
    if (reinterpret_cast<uv_stream_t*>(listeners_[i].get()) == server) return security_.listener(i);
  return nullptr;
}

}  // namespace petrel
