#include "src/bridges/bridge.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "mqtt/encoder.h"
#include "src/bridges/bridges.h"
#include "src/sessions/sessions.h"
#include "src/timers/loop_timers.h"
#include "src/transport/connection.h"
#include "src/util/log.h"
#include "tls/tls_context.h"

namespace petrel {

namespace {

std::string defaultClientId(const std::string& name) {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == 0) std::strcpy(host, "petrel");
  return std::string(host) + "." + name;
}

}  // namespace

// A host name lookup in flight; outlives its bridge if need be (the
// callback then finds `bridge` null).
struct Bridge::Resolve {
  uv_getaddrinfo_t req;
  Bridge* bridge;
};

Bridge::Bridge(Bridges& owner, const BridgeConfig& cfg)
    : owner_(owner),
      cfg_(cfg),
      map_(cfg.topics),
      client_id_(cfg.client_id.empty() ? defaultClientId(cfg.name) : cfg.client_id),
      retry_(&Bridge::onRetry, this),
      ping_(&Bridge::onPing, this) {}

Bridge::~Bridge() {
  if (resolving_) resolving_->bridge = nullptr;
}

std::string Bridge::addressText() const {
  const auto& a = cfg_.addresses[address_ % cfg_.addresses.size()];
  return (a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host) + ":" + std::to_string(a.port);
}

void Bridge::connect() {
  if (stopped_ || conn_ || resolving_) return;
  if (started_) ++counters.reconnects;
  started_ = true;
  const auto& a = cfg_.addresses[address_ % cfg_.addresses.size()];
  sockaddr_storage ss{};
  if (uv_ip4_addr(a.host.c_str(), a.port, reinterpret_cast<sockaddr_in*>(&ss)) == 0 ||
      uv_ip6_addr(a.host.c_str(), a.port, reinterpret_cast<sockaddr_in6*>(&ss)) == 0)
    return open(reinterpret_cast<const sockaddr*>(&ss));
  // A host name: looked up on libuv's thread pool.
  auto* r = new Resolve{{}, this};
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port = std::to_string(a.port);
  const int rc = uv_getaddrinfo(owner_.p_.loop, &r->req, &Bridge::onResolved, a.host.c_str(), port.c_str(), &hints);
  if (rc != 0) {
    delete r;
    return retryLater(uv_strerror(rc));
  }
  resolving_ = r;
}

void Bridge::onResolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  std::unique_ptr<Resolve> r(reinterpret_cast<Resolve*>(req));
  Bridge* b = r->bridge;
  if (b) b->resolving_ = nullptr;
  if (b && !b->stopped_) {
    if (status == 0 && res) b->open(res->ai_addr);
    else b->retryLater(status == 0 ? "no address" : uv_strerror(status));
  }
  uv_freeaddrinfo(res);
}

void Bridge::open(const sockaddr* addr) {
  Connection* c = owner_.p_.new_connection();
  c->bridge = this;
  conn_ = c;
  if (tls_) {
    const auto& a = cfg_.addresses[address_ % cfg_.addresses.size()];
    c->enableClientTls(*tls_, cfg_.verify_hostname ? (cfg_.server_name.empty() ? a.host : cfg_.server_name) : "");
  }
  LOG_INFO("bridge %s: connecting to %s", name().c_str(), addressText().c_str());
  const int rc = c->connectTo(addr);
  owner_.p_.watch(*c);  // no CONNACK within the connect timeout: closed
  if (rc != 0) {
    LOG_WARN("bridge %s: cannot connect to %s: %s", name().c_str(), addressText().c_str(), uv_strerror(rc));
    c->closeNow();  // linkLost() plans the next attempt
  }
}

void Bridge::retryLater(const char* why) {
  if (stopped_) return;
  // Exponential backoff from reconnect_min_ms to reconnect_max_ms, with
  // "equal jitter" (half fixed, half random) so that bridges of many
  // brokers to one remote do not come back in step.
  uint64_t delay = cfg_.reconnect_min_ms;
  for (uint32_t i = 0; i < failures_ && delay < cfg_.reconnect_max_ms; ++i) delay *= 2;
  delay = std::min<uint64_t>(delay, cfg_.reconnect_max_ms);
  static std::mt19937_64 rng{std::random_device{}()};
  delay = delay / 2 + rng() % (delay / 2 + 1);
  ++failures_;
  ++address_;  // fail over to the next address (round robin)
  LOG_NOTICE("bridge %s: %s; next attempt in %llu ms (%s)", name().c_str(), why,
             static_cast<unsigned long long>(delay), addressText().c_str());
  owner_.p_.timers.armAfter(retry_, delay);
}

void Bridge::onRetry(Timer& t) { t.owner<Bridge>()->connect(); }

void Bridge::connected(Connection& c, int status) {
  if (status != 0) {
    LOG_WARN("bridge %s: cannot connect to %s: %s", name().c_str(), addressText().c_str(), uv_strerror(status));
    c.closeNow();
    return;
  }
  mqtt::Connect p;
  p.version = cfg_.v5 ? mqtt::Version::V5 : mqtt::Version::V311;
  p.bridge = !cfg_.v5 && cfg_.try_private && !private_refused_;
  p.clean_start = cfg_.clean_start;
  p.keepalive = cfg_.keepalive;
  p.client_id = client_id_;
  p.username = cfg_.username;
  p.password = cfg_.password;
  if (cfg_.v5) {
    const Config& g = owner_.p_.cfg;
    if (!cfg_.clean_start && cfg_.session_expiry) p.props.session_expiry_interval = cfg_.session_expiry;
    p.props.receive_maximum = g.max_inflight;
    p.props.maximum_packet_size = g.max_packet_size;
    p.props.user_properties.emplace_back(kUserProperty, name());
  }
  c.version = p.version;
  mqtt::encode(p, c.out());
}

void Bridge::onConnack(Connection& c, const mqtt::Frame& f) {
  mqtt::Connack a;
  if (c.connected || mqtt::parse(f, c.version, a) != mqtt::Reason::Success) {
    LOG_WARN("bridge %s: malformed or unexpected CONNACK from %s", name().c_str(), addressText().c_str());
    c.closeNow();
    return;
  }
  if (a.reason != mqtt::Reason::Success) {
    const bool refused_bit = !cfg_.v5 && cfg_.try_private && !private_refused_ &&
                             a.reason == mqtt::Reason::UnsupportedProtocolVersion;
    if (refused_bit) private_refused_ = true;  // next time as a plain client
    LOG_WARN("bridge %s: %s refused the connection: %s%s", name().c_str(), addressText().c_str(),
             std::string(mqtt::reasonName(a.reason)).c_str(),
             refused_bit ? " (the bridge protocol bit; trying without it)" : "");
    c.closeNow();
    return;
  }
  Session& s = *session_;
  Sessions& sessions = owner_.p_.sessions;
  c.connected = true;
  c.keepalive = 0;  // the broker's keep-alive check is for clients; ping_ is ours
  s.conn = &c;
  c.session = &s;
  s.version = c.version;
  s.client_receive_max = std::min<uint16_t>(cfg_.max_inflight, a.props.receive_maximum.value_or(65535));
  s.client_max_packet = a.props.maximum_packet_size.value_or(0);
  s.client_topic_alias_max = 0;
  sessions.scheduleExpiry(s);
  owner_.p_.watch(c);
  failures_ = 0;
  LOG_NOTICE("bridge %s: connected to %s (MQTT %s, remote session %s), %zu queued", name().c_str(),
             addressText().c_str(), cfg_.v5 ? "5.0" : "3.1.1", a.session_present ? "resumed" : "new",
             s.queuedCount() + s.inflight.size());
  if (a.props.maximum_qos) {
    for (const BridgeTopic& t : cfg_.topics)
      if (t.out() && t.qos > *a.props.maximum_qos)
        LOG_WARN("bridge %s: the remote accepts QoS %u at most; rule '%s' forwards QoS %u, which it will refuse",
                 name().c_str(), *a.props.maximum_qos, t.pattern.c_str(), t.qos);
  }
  subscribeRemote(c);
  keepalive_ = a.props.server_keep_alive.value_or(cfg_.keepalive);
  if (keepalive_) owner_.p_.timers.armAfter(ping_, uint64_t(keepalive_) * 1000);
  setUp(true);
  sessions.resume(s, c);  // in flight again (DUP), then the queue
}

void Bridge::subscribeRemote(Connection& c) {
  mqtt::Subscribe sub;
  for (const BridgeTopic& t : cfg_.topics) {
    if (!t.in()) continue;
    mqtt::SubscribeTopic st;
    st.filter = t.remoteFilter();
    st.qos = std::min(t.qos, owner_.p_.cfg.max_qos);  // what we accept ourselves
    // MQTT 5: what we publish there does not come back, and retained
    // messages keep their flag. (MQTT 3.1.1: the bridge bit asks the same
    // of brokers that know it.)
    st.no_local = cfg_.v5;
    st.retain_as_published = cfg_.v5;
    sub.topics.push_back(std::move(st));
  }
  if (sub.topics.empty()) return;
  sub.packet_id = session_->nextPacketId();
  mqtt::encode(sub, c.version, c.out());
}

void Bridge::linkLost(Connection& c) {
  if (conn_ != &c) return;
  conn_ = nullptr;
  owner_.p_.timers.cancel(ping_);
  const bool was_up = up_;
  setUp(false);
  if (was_up) LOG_NOTICE("bridge %s: link to %s lost", name().c_str(), addressText().c_str());
  retryLater(was_up ? "reconnecting" : "connection failed");
}

void Bridge::onPing(Timer& t) {
  Bridge& b = *t.owner<Bridge>();
  Connection* c = b.conn_;
  if (!c || !b.up_) return;
  LoopTimers& timers = b.owner_.p_.timers;
  const uint64_t keepalive_ms = uint64_t(b.keepalive_) * 1000;
  // Nothing heard for 1.5 keep alive intervals (not even PINGRESP): the
  // remote or the path is gone, whatever TCP thinks.
  if (timers.now() - c->last_rx_ms > keepalive_ms * 3 / 2) {
    LOG_WARN("bridge %s: no answer from %s for %u s", b.name().c_str(), b.addressText().c_str(),
             b.keepalive_ * 3 / 2);
    c->closeNow();
    return;
  }
  mqtt::encodePingreq(c->out());
  timers.armAfter(t, keepalive_ms);
}

void Bridge::stop() {
  stopped_ = true;
  owner_.p_.timers.cancel(retry_);
  owner_.p_.timers.cancel(ping_);
  if (resolving_) {
    uv_cancel(reinterpret_cast<uv_req_t*>(&resolving_->req));
    resolving_->bridge = nullptr;
    resolving_ = nullptr;
  }
  if (Connection* c = conn_) {
    if (c->connected) {
      mqtt::Disconnect d;  // normal disconnection: the remote drops no will of ours
      mqtt::encode(d, c->version, c->out());
    }
    c->closeAfterFlush();
  }
}

void Bridge::setUp(bool up) {
  if (up_ == up) return;
  up_ = up;
  owner_.publishStatus(*this, "state", up ? "1" : "0");
}

}  // namespace petrel
