#include "src/bridges/bridges.h"

#include <algorithm>

#include "mqtt/encoder.h"
#include "src/durable/durable.h"
#include "src/routing/router.h"
#include "src/sessions/sessions.h"
#include "src/timers/loop_timers.h"
#include "src/transport/connection.h"
#include "src/util/log.h"
#include "tls/tls_context.h"

namespace petrel {

namespace {
constexpr std::string_view kSessionPrefix = "$bridge/";
}  // namespace

Bridges::Bridges(const Parts& p) : p_(p) {}

Bridges::~Bridges() = default;

bool Bridges::start(std::string& err) {
  Sessions& sessions = p_.sessions;
  // The out queue of a bridge that is no longer configured has nowhere to go.
  std::vector<Session*> stale;
  sessions.forEach([&](Session& s) {
    const std::string& id = s.clientId();
    if (id.compare(0, kSessionPrefix.size(), kSessionPrefix) != 0) return;
    const std::string name = id.substr(kSessionPrefix.size());
    const bool configured = std::any_of(p_.cfg.bridges.begin(), p_.cfg.bridges.end(),
                                        [&](const BridgeConfig& b) { return b.name == name; });
    if (!configured) stale.push_back(&s);
  });
  for (Session* s : stale) {
    LOG_NOTICE("bridge %s is no longer configured: its queue of %zu messages is dropped",
               s->clientId().c_str() + kSessionPrefix.size(), s->queuedCount() + s->inflight.size());
    sessions.end(s);
  }

  for (const BridgeConfig& bc : p_.cfg.bridges) {
    auto b = std::make_unique<Bridge>(*this, bc);
    if (bc.tls) {
      std::string e;
      b->tls_ = tls::TlsContext::createClient(*bc.tls, e);
      if (!b->tls_) {
        err = "bridge " + bc.name + ": TLS: " + e;
        return false;
      }
    }
    const std::string id = Bridge::sessionId(bc.name);
    Session* s = sessions.find(id);
    if (!s) s = &sessions.create(id);
    s->bridge = true;
    s->expiry_interval = 0xFFFFFFFF;  // kept until the bridge is removed
    s->expires_at_ms = 0;
    s->username.reset();
    s->version = bc.v5 ? mqtt::Version::V5 : mqtt::Version::V311;
    sessions.setQueueLimits(*s, {bc.queue_max_messages, bc.queue_max_bytes, bc.queue_qos0});
    const bool was_stored = s->stored;
    if (sessions.durable(*s)) sessions.save(*s);

    // Its subscriptions are the local side of the out rules.
    std::vector<std::pair<std::string, SubscriptionOptions>> want;
    for (const BridgeTopic& t : bc.topics) {
      if (!t.out()) continue;
      SubscriptionOptions o;
      o.qos = std::min(t.qos, p_.cfg.max_qos);
      o.no_local = true;             // not back where it came from
      o.retain_as_published = true;  // the remote keeps retained messages retained
      want.emplace_back(t.localFilter(), o);
    }
    std::vector<std::string> gone;
    for (const auto& e : s->subscriptions) {
      const bool kept = std::any_of(want.begin(), want.end(), [&](const auto& w) { return w.first == e.key; });
      if (!kept) gone.push_back(e.key);
    }
    for (const std::string& key : gone) {
      p_.router.unsubscribe(*s, key);
      if (p_.durable.enabled() && s->stored) p_.durable.batch().deleteSubscription(s->clientId(), key);
      s->subscriptions.erase(key);
    }
    for (const auto& w : want) {
      p_.router.tree().subscribe(w.first, "", s, w.second);
      const bool changed = !s->subscriptions.find(w.first) || !was_stored;
      s->subscriptions.set(w.first, w.second);
      if (p_.durable.enabled() && s->stored && changed) sessions.saveSubscription(*s, w.first, w.second);
    }
    b->session_ = s;
    bridges_.push_back(std::move(b));
  }
  for (auto& b : bridges_) {
    publishStatus(*b, "state", "0");
    b->connect();
  }
  return true;
}

void Bridges::stop() {
  for (auto& b : bridges_) b->stop();
}

void Bridges::onConnected(Connection& c, int status) {
  if (c.bridge) c.bridge->connected(c, status);
}

void Bridges::onLinkLost(Connection& c) {
  if (c.bridge) c.bridge->linkLost(c);
}

void Bridges::onPacket(Connection& c, const mqtt::Frame& f) {
  using mqtt::PacketType;
  Bridge& b = *c.bridge;
  switch (f.type) {
    case PacketType::Connack:
      b.onConnack(c, f);
      return;
    case PacketType::Suback: {
      mqtt::Suback a;
      if (mqtt::parse(f, c.version, a) != mqtt::Reason::Success) break;
      for (size_t i = 0; i < a.reasons.size(); ++i)
        if (a.reasons[i] >= 0x80)
          LOG_WARN("bridge %s: the remote refused in-rule subscription %zu (reason 0x%02x)", b.name().c_str(),
                   i + 1, a.reasons[i]);
      return;
    }
    case PacketType::Unsuback:
    case PacketType::Pingresp:
      return;  // the read itself counted as life (last_rx_ms)
    case PacketType::Disconnect: {
      mqtt::Disconnect d;
      mqtt::parse(f, c.version, d);
      LOG_NOTICE("bridge %s: the remote disconnected (%s)", b.name().c_str(),
                 std::string(mqtt::reasonName(d.reason)).c_str());
      c.closeNow();
      return;
    }
    default:
      break;
  }
  LOG_WARN("bridge %s: malformed or unexpected %s from the remote", b.name().c_str(),
           std::string(mqtt::packetTypeName(f.type)).c_str());
  c.closeNow();
}

void Bridges::publishStatus(const Bridge& b, const std::string& what, const std::string& value) {
  auto m = makeMessage();
  m->topic = "$SYS/broker/bridge/" + b.name() + "/" + what;
  m->payload = value;
  m->retain = true;
  m->id = p_.durable.newMessageId();
  MessagePtr msg = std::move(m);
  p_.router.retainInMemory(msg);  // like every $SYS value: not stored
  p_.router.route(msg);
}

void Bridges::publishSys() {
  for (const auto& b : bridges_) {
    const Session& s = *b->session_;
    publishStatus(*b, "state", b->up() ? "1" : "0");
    publishStatus(*b, "forwarded", std::to_string(b->counters.forwarded));
    publishStatus(*b, "received", std::to_string(b->counters.received));
    publishStatus(*b, "queued", std::to_string(s.queuedCount() + s.inflight.size()));
    publishStatus(*b, "dropped", std::to_string(s.dropped));
    publishStatus(*b, "reconnects", std::to_string(b->counters.reconnects));
  }
}

}  // namespace petrel
