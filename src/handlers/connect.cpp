// CONNECT (§3.1) and CONNACK (§3.2): protocol level, client identifier,
// session lookup, takeover and resumption, keep alive, and the capabilities
// the broker announces to MQTT 5 clients.
#include <unistd.h>

#include <algorithm>
#include <random>

#include "mqtt/decoder.h"
#include "mqtt/encoder.h"
#include "mqtt/topic.h"
#include "src/bridges/bridge.h"
#include "src/broker/broker.h"
#include "tls/tls_session.h"
#include "src/util/log.h"

namespace petrel {

namespace {

// Password hashes computed at once: one core always stays with the loop
// (a busy worker pool on every core delays it by whole scheduler slices),
// and libuv's pool (4 threads) keeps room for other work.
unsigned maxConcurrentHashes() {
  static const unsigned n = [] {
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return static_cast<unsigned>(std::clamp<long>(cores - 1, 1, 3));
  }();
  return n;
}

std::string assignClientId() {
  static std::mt19937_64 rng{std::random_device{}()};
  static const char hex[] = "0123456789abcdef";
  std::string id = "petrel-";
  uint64_t v = rng();
  for (int i = 0; i < 16; ++i) id.push_back(hex[(v >> (i * 4)) & 0xF]);
  return id;
}

}  // namespace

void Broker::sendConnackError(Connection& c, mqtt::Version v, mqtt::Reason r) {
  mqtt::Connack ack;
  ack.reason = r;
  mqtt::encode(ack, v, c.out());
  c.closeAfterFlush();
}

void Broker::handleConnect(Connection& c, const mqtt::Frame& f) {
  using mqtt::Reason;
  using mqtt::Version;
  mqtt::Connect p;
  Reason rc = mqtt::parseConnect(f, p);
  if (rc == Reason::UnsupportedProtocolVersion) {
    // [MQTT-3.1.2-2]: CONNACK 0x01 (MQTT 3.1.1 form, which every level
    // understands well enough to see the refusal) and close.
    LOG_NOTICE("refusing %s: unsupported protocol level %u", c.peer().c_str(),
               static_cast<unsigned>(p.version));
    ++stats_.connections_refused[static_cast<size_t>(Refusal::Protocol)];
    sendConnackError(c, Version::V311, rc);
    return;
  }
  if (rc != Reason::Success) {
    LOG_NOTICE("refusing %s: malformed CONNECT (%s)", c.peer().c_str(),
               std::string(mqtt::reasonName(rc)).c_str());
    ++stats_.connections_refused[static_cast<size_t>(Refusal::Protocol)];
    if (p.version == Version::V5) {
      sendConnackError(c, Version::V5, rc);
    } else {
      c.closeAfterFlush();
    }
    return;
  }
  const Version v = p.version;
  const bool v5 = v == Version::V5;
  c.version = v;

  auto refuse = [&](Refusal kind, Reason r, const char* why) {
    ++stats_.connections_refused[static_cast<size_t>(kind)];
    LOG_NOTICE("refusing client '%s' from %s: %s", quoted(p.client_id).c_str(), c.peer().c_str(), why);
    sendConnackError(c, v, r);
  };

  // Connections on their way out (half-closed, lingering) no longer count.
  if (cfg_.max_connections && connections_.size() - closing_connections_ > cfg_.max_connections)
    return refuse(Refusal::Limit, v5 ? Reason::QuotaExceeded : Reason::ServerUnavailable, "too many connections");
  if (p.props.authentication_method)
    return refuse(Refusal::Auth, Reason::BadAuthenticationMethod, "enhanced authentication is not supported");
  // A password is checked on a worker thread: a hash costs up to
  // milliseconds, and a client guessing passwords must not slow the loop
  // (everyone else). The connection reads nothing more until the answer.
  if (auto pw = security_.passwordFileFor(c.listener, p)) {
    uint32_t& pending = pending_auth_per_listener_[c.listener];
    if (pending >= kMaxPendingAuthPerListener)
      return refuse(Refusal::Limit, v5 ? Reason::ServerBusy : Reason::ServerUnavailable,
                    "too many password checks in progress on this listener");
    ++pending;
    auto* w = new PendingAuth;
    w->req.data = w;
    w->broker = this;
    w->ticket = next_auth_ticket_++;
    w->listener = c.listener;
    w->passwords = std::move(pw);
    w->connect = std::move(p);
    pending_auth_[w->ticket] = &c;
    holdConnect(c, w->ticket);
    auth_queue_.push_back(w);
    startPasswordChecks();
    return;
  }
  continueConnect(c, std::move(p), nullptr);
}

void Broker::startPasswordChecks() {
  while (auth_running_ < maxConcurrentHashes() && !auth_queue_.empty()) {
    PendingAuth* w = auth_queue_.front();
    auth_queue_.pop_front();
    if (!pending_auth_.count(w->ticket)) {
      // The client went away while it waited: no hash for it.
      if (uint32_t& n = pending_auth_per_listener_[w->listener]; n > 0) --n;
      delete w;
      continue;
    }
    ++auth_running_;
    uv_queue_work(loop_, &w->req, &Broker::checkPasswordWork, &Broker::passwordChecked);
  }
}

void Broker::checkPasswordWork(uv_work_t* req) {
  // Worker thread: touches only the request (and the shared, immutable
  // password file).
  auto* w = static_cast<PendingAuth*>(req->data);
  w->result = w->passwords->check(*w->connect.username, w->connect.password.value_or(""));
}

void Broker::passwordChecked(uv_work_t* req, int) {
  std::unique_ptr<PendingAuth> w(static_cast<PendingAuth*>(req->data));
  Broker& b = *w->broker;
  if (uint32_t& n = b.pending_auth_per_listener_[w->listener]; n > 0) --n;
  --b.auth_running_;
  b.startPasswordChecks();
  auto it = b.pending_auth_.find(w->ticket);
  if (it == b.pending_auth_.end()) return;  // the client went away meanwhile
  Connection& c = *it->second;
  b.pending_auth_.erase(it);
  c.auth_ticket = 0;
  b.resumeConnect(c, std::move(w->connect), &w->result, false);
}

void Broker::resumeConnect(Connection& c, mqtt::Connect&& p, const PasswordFile::Result* checked,
                           bool old_input_read) {
  // The rest of CONNECT, with its answer held until the commit as if it
  // had been handled at once (Broker::dispatchHolding).
  const Connection::OutMark mark = c.outMark();
  const size_t ops = durable_.enabled() ? durable_.batch().count() : 0;
  continueConnect(c, std::move(p), checked, old_input_read);
  if (c.auth_ticket) return;  // it waits again (waitForInputOf): nothing written
  if (durable_.enabled() && durable_.batch().count() != ops && !c.closing())
    holds_.hold(c, mark, durable_.awaitedTicket(), nullptr);
  c.resumeInput();  // what the client sent meanwhile
}

void Broker::holdConnect(Connection& c, uint64_t ticket) {
  c.auth_ticket = ticket;
  c.pauseInput();
  // Its deadline is now limits.max_connect_wait, which may be sooner than
  // the one for a socket yet to send its CONNECT.
  armConnectionTimer(c);
}

bool Broker::waitForInputOf(Connection& old, Connection& c, mqtt::Connect& p, const PasswordFile::Result* checked) {
  const uint64_t ticket = next_auth_ticket_++;
  if (!old.syncInput([this, ticket] { inputOfOldRead(ticket); })) return false;
  WaitingConnect w{&c, std::move(p), std::nullopt};
  if (checked) w.checked = *checked;
  waiting_connects_.emplace(ticket, std::move(w));
  holdConnect(c, ticket);
  return true;
}

void Broker::inputOfOldRead(uint64_t ticket) { resumeWaitingConnect(ticket, false); }

void Broker::resumeWaitingConnect(uint64_t ticket, bool close) {
  auto it = waiting_connects_.find(ticket);
  if (it == waiting_connects_.end()) return;  // the client went away meanwhile
  WaitingConnect w = std::move(it->second);
  waiting_connects_.erase(it);
  Connection& c = *w.conn;
  c.auth_ticket = 0;
  if (close) {
    c.closeAfterFlush();
    return;
  }
  resumeConnect(c, std::move(w.connect), w.checked ? &*w.checked : nullptr, true);
}

void Broker::continueConnect(Connection& c, mqtt::Connect&& p, const PasswordFile::Result* checked,
                             bool old_input_read) {
  using mqtt::Reason;
  using mqtt::Version;
  const Version v = p.version;
  const bool v5 = v == Version::V5;
  // The session's connection, if it has one, may still hold input sent
  // before this CONNECT (a DISCONNECT above all) on another loop: that
  // goes first.
  if (!old_input_read && !p.client_id.empty()) {
    Session* s = sessions_.find(p.client_id);
    if (s && s->conn && s->conn != &c && waitForInputOf(*s->conn, c, p, checked)) return;
  }
  auto refuse = [&](Refusal kind, Reason r, const char* why) {
    ++stats_.connections_refused[static_cast<size_t>(kind)];
    LOG_NOTICE("refusing client '%s' from %s: %s", quoted(p.client_id).c_str(), c.peer().c_str(), why);
    sendConnackError(c, v, r);
  };

  // Authentication (Security): refused with 0x86/0x87 (v5) or 4/5.
  std::optional<std::string> username;
  std::string auth_error;
  std::optional<std::string> peer_cn;
  if (const std::string* cn = c.peerCommonName()) peer_cn = *cn;
  if (Reason ar = security_.authenticate(c.listener, peer_cn, p, username, auth_error, checked);
      ar != Reason::Success)
    return refuse(Refusal::Auth, ar, auth_error.c_str());

  // Client identifier (§3.1.3.1).
  bool assigned = false;
  if (p.client_id.empty()) {
    // [MQTT-3.1.3-8]: v3.1.1 needs clean session for an empty id; MQTT 3.1
    // requires 1..23 characters.
    if (v == Version::V31 || !cfg_.allow_zero_length_clientid || (v == Version::V311 && !p.clean_start))
      return refuse(Refusal::ClientId, Reason::ClientIdentifierNotValid, "empty client identifier");
    p.client_id = assignClientId();
    assigned = true;
  }

  // "$bridge/<name>" is the out queue of one of our bridges (bridges/).
  if (p.client_id.compare(0, 8, "$bridge/") == 0)
    return refuse(Refusal::ClientId, Reason::ClientIdentifierNotValid, "client identifier reserved for bridges");

  // In a cluster, the session comes first from the node the client last
  // connected to (src/cluster/session_moves.h); the CONNECT waits for it.
  // Every CONNECT of a client whose session is on its way here waits too.
  if (!old_input_read && !assigned && (!p.clean_start || moves_.movingIn(p.client_id))) {
    const uint64_t ticket = next_auth_ticket_++;
    if (moves_.moveIn(p.client_id, ticket)) {
      WaitingConnect w{&c, std::move(p), std::nullopt};
      if (checked) w.checked = *checked;
      waiting_connects_.emplace(ticket, std::move(w));
      holdConnect(c, ticket);
      return;
    }
  }
  // A clean start here ends the session it had on another node.
  if (p.clean_start && !assigned) moves_.discardElsewhere(p.client_id);

  // The will (§3.1.2.5): check it now, so a bad one refuses the connection.
  if (p.will) {
    if (!mqtt::validTopicName(p.will->topic, cfg_.max_topic_levels))
      return refuse(Refusal::Other, v5 ? Reason::TopicNameInvalid : Reason::UnspecifiedError, "invalid will topic");
    if (p.will->props.response_topic && !mqtt::validTopicName(*p.will->props.response_topic))
      return refuse(Refusal::Other, Reason::ProtocolError, "will Response Topic is not a valid topic name");
    if (p.will->qos > cfg_.max_qos)
      return refuse(Refusal::Other, v5 ? Reason::QosNotSupported : Reason::UnspecifiedError, "will QoS above maximum");
    if (p.will->retain && !cfg_.retain_available)
      return refuse(Refusal::Other, v5 ? Reason::RetainNotSupported : Reason::UnspecifiedError, "will retain not available");
  }

  // Keep alive (§3.1.2.10, §3.2.2.3.14 Server Keep Alive).
  uint16_t keepalive = p.keepalive;
  bool server_keepalive = false;
  if (cfg_.max_keepalive && (keepalive > cfg_.max_keepalive || (keepalive == 0 && cfg_.max_keepalive < 65535))) {
    if (!v5) {
      // MQTT 3.1.1 has no way to tell the client a smaller interval; like
      // mosquitto, such a client is refused rather than cut off later.
      return refuse(Refusal::Other, Reason::ClientIdentifierNotValid, "keep alive above limits.max_keepalive");
    }
    keepalive = cfg_.max_keepalive;
    server_keepalive = true;
  }

  // Session expiry: v3.1.1 clean_session=0 keeps the session forever.
  uint32_t expiry = 0;
  if (v5) {
    expiry = p.props.session_expiry_interval.value_or(0);
    if (expiry > cfg_.max_session_expiry) expiry = cfg_.max_session_expiry;
  } else {
    expiry = p.clean_start ? 0 : 0xFFFFFFFF;
  }

  // Session lookup, takeover [MQTT-3.1.4-3] and clean start [MQTT-3.1.2-4].
  Session* s = sessions_.find(p.client_id);
  bool present = false;
  if (s && s->conn) sessions_.takeOver(*s, c.peer());
  if (s && p.clean_start) {
    // A pending will fires when its session ends (§3.1.3.2.2).
    sessions_.end(s);
    s = nullptr;
  }
  if (s) {
    present = true;
    if (s->will && s->will_at_ms) s->will.reset();  // reconnected within the delay
  } else {
    s = &sessions_.create(p.client_id);
  }
  s->will.reset();
  s->will_at_ms = 0;
  s->expires_at_ms = 0;
  s->version = v;
  s->username = std::move(username);
  // Another broker's bridge: the bridge bit of MQTT 3.1.1 (mosquitto's
  // try_private) or a Petrel bridge's CONNECT user property.
  s->peer_bridge = p.bridge;
  for (const auto& up : p.props.user_properties)
    if (up.first == Bridge::kUserProperty) s->peer_bridge = true;
  s->expiry_interval = expiry;
  // The broker's outbound window: limits.max_inflight, or the client's
  // Receive Maximum if that is smaller (§3.1.2.11.3; 65,535 when absent, as
  // paho sends it). What one session keeps in flight -- in memory, and in
  // work per acknowledgement -- is the operator's choice for every client.
  s->client_receive_max = v5 ? p.props.receive_maximum.value_or(65535) : cfg_.max_inflight;
  if (s->client_receive_max > cfg_.max_inflight) s->client_receive_max = cfg_.max_inflight;
  s->client_max_packet = v5 ? p.props.maximum_packet_size.value_or(0) : 0;
  s->client_topic_alias_max = v5 ? p.props.topic_alias_maximum.value_or(0) : 0;
  if (p.will) s->will = std::make_unique<mqtt::Will>(std::move(*p.will));

  s->conn = &c;
  c.session = s;
  c.connected = true;
  ++stats_.connects_accepted;
  if (++stats_.clients_connected > stats_.clients_maximum) stats_.clients_maximum = stats_.clients_connected;
  c.keepalive = keepalive;
  c.aliases.reset();
  armConnectionTimer(c);        // from now on: keep alive
  sessions_.scheduleExpiry(*s);  // online: no will delay or expiry runs

  if (sessions_.durable(*s)) {
    // Newly durable sessions write their subscriptions too; what they had
    // queued before becoming durable stays in RAM only.
    const bool was_stored = s->stored;
    sessions_.save(*s);
    if (!was_stored) {
      for (const auto& e : s->subscriptions) sessions_.saveSubscription(*s, e.key, e.opts);
    }
  }

  mqtt::Connack ack;
  ack.session_present = present;
  if (v5) {
    auto& pr = ack.props;
    pr.receive_maximum = cfg_.max_inflight;
    if (cfg_.max_qos < 2) pr.maximum_qos = cfg_.max_qos;
    if (!cfg_.retain_available) pr.retain_available = 0;
    pr.maximum_packet_size = cfg_.max_packet_size;
    if (cfg_.topic_alias_maximum) pr.topic_alias_maximum = cfg_.topic_alias_maximum;
    if (assigned) pr.assigned_client_identifier = p.client_id;
    if (server_keepalive) pr.server_keep_alive = keepalive;
    if (p.props.session_expiry_interval && expiry != *p.props.session_expiry_interval)
      pr.session_expiry_interval = expiry;
    pr.wildcard_subscription_available = 1;
    pr.subscription_identifier_available = 1;
    pr.shared_subscription_available = 1;
  }
  mqtt::encode(ack, v, c.out());
  LOG_INFO("client %s connected from %s (MQTT %s, %s, keep alive %u)", quoted(s->clientId()).c_str(),
           c.peer().c_str(), v == Version::V5 ? "5.0" : v == Version::V311 ? "3.1.1" : "3.1",
           present ? "session resumed" : "new session", keepalive);
  sessions_.resume(*s, c);
  // In a cluster: the client's connection to any other node closes (0x8E).
  cluster_.clientConnected(s->clientId());
}

}  // namespace petrel
