#include "src/config/config.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include "mqtt/topic.h"

#include <cstdlib>
#include <cstring>

#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>

namespace petrel {

namespace {

// A user-caused configuration error; carries the line of the offending node.
struct ConfigError : std::runtime_error {
  int line;
  ConfigError(int l, const std::string& msg) : std::runtime_error(msg), line(l) {}
};

int lineOf(const YAML::Node& n) { return n.Mark().line + 1; }

template <typename T>
T readInt(const YAML::Node& n, const std::string& key, long long lo, long long hi) {
  if (!n.IsScalar()) throw ConfigError(lineOf(n), key + ": expected an integer");
  long long v;
  try {
    v = n.as<long long>();
  } catch (const YAML::Exception&) {
    throw ConfigError(lineOf(n), key + ": expected an integer, got '" + n.Scalar() + "'");
  }
  if (v < lo || v > hi)
    throw ConfigError(lineOf(n), key + ": " + n.Scalar() + " is out of range " +
                                     std::to_string(lo) + ".." + std::to_string(hi));
  return static_cast<T>(v);
}

bool readBool(const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) throw ConfigError(lineOf(n), key + ": expected true or false");
  try {
    return n.as<bool>();
  } catch (const YAML::Exception&) {
    throw ConfigError(lineOf(n), key + ": expected true or false, got '" + n.Scalar() + "'");
  }
}

std::string readString(const YAML::Node& n, const std::string& key) {
  if (!n.IsScalar()) throw ConfigError(lineOf(n), key + ": expected a string");
  return n.Scalar();
}

using Handler = std::function<void(const YAML::Node&, const std::string&)>;

// Walks a mapping, dispatching each key to its handler; unknown keys are
// errors so that a typo never silently leaves a default in force.
void readMap(const YAML::Node& map, const std::string& prefix,
             const std::map<std::string, Handler>& handlers) {
  if (map.IsNull()) return;
  if (!map.IsMap())
    throw ConfigError(lineOf(map), (prefix.empty() ? std::string("top level") : prefix) +
                                       ": expected a mapping of keys");
  for (const auto& kv : map) {
    const std::string key = kv.first.Scalar();
    const std::string full = prefix.empty() ? key : prefix + "." + key;
    auto it = handlers.find(key);
    if (it == handlers.end()) throw ConfigError(lineOf(kv.first), full + ": unknown key");
    it->second(kv.second, full);
  }
}

// A handler that reads a string into `field` (a std::string or an
// optional one).
template <typename T>
Handler str(T& field) {
  return [&field](const YAML::Node& v, const std::string& kk) { field = readString(v, kk); };
}

tls::TlsConfig readTls(const YAML::Node& n, const std::string& k) {
  tls::TlsConfig t;
  readMap(n, k, {
    {"cert_file", str(t.cert_file)},
    {"key_file", str(t.key_file)},
    {"ca_file", str(t.ca_file)},
    {"ca_dir", str(t.ca_dir)},
    {"crl_file", str(t.crl_file)},
    {"ciphers", str(t.ciphers)},
    {"ciphersuites", str(t.ciphersuites)},
    {"require_certificate", [&](const YAML::Node& v, const std::string& kk) { t.require_certificate = readBool(v, kk); }},
    {"use_identity_as_username", [&](const YAML::Node& v, const std::string& kk) { t.use_identity_as_username = readBool(v, kk); }},
    {"handshake_timeout_ms", [&](const YAML::Node& v, const std::string& kk) { t.handshake_timeout_ms = readInt<uint32_t>(v, kk, 100, 600000); }},
    {"min_version", [&](const YAML::Node& v, const std::string& kk) {
       t.min_version = readString(v, kk);
       // RFC 8996 deprecates TLS 1.0 and 1.1.
       if (t.min_version != "1.2" && t.min_version != "1.3")
         throw ConfigError(lineOf(v), kk + ": '" + t.min_version +
                                          "' is not supported; use \"1.2\" or \"1.3\" (TLS 1.0 and 1.1 are refused)");
     }},
  });
  if (n.IsNull() || !n.IsMap()) throw ConfigError(lineOf(n), k + ": expected a mapping with cert_file and key_file");
  if (t.cert_file.empty()) throw ConfigError(lineOf(n), k + ".cert_file: required for a TLS listener");
  if (t.key_file.empty()) throw ConfigError(lineOf(n), k + ".key_file: required for a TLS listener");
  if (t.require_certificate && t.ca_file.empty() && t.ca_dir.empty())
    throw ConfigError(lineOf(n), k + ".require_certificate: needs ca_file or ca_dir");
  if (t.use_identity_as_username && !t.require_certificate)
    throw ConfigError(lineOf(n), k + ".use_identity_as_username: needs require_certificate: true");
  return t;
}

WebSocketConfig readWebSocket(const YAML::Node& n, const std::string& k) {
  WebSocketConfig w;
  readMap(n, k, {
    {"path", [&](const YAML::Node& v, const std::string& kk) {
       w.path = readString(v, kk);
       bool ok = !w.path.empty() && w.path[0] == '/';
       for (char ch : w.path)
         if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7F || ch == '?' || ch == '#') ok = false;
       if (!ok) throw ConfigError(lineOf(v), kk + ": '" + w.path + "' is not a path ('/' first; no spaces, '?' or '#')");
     }},
    {"max_frame_size", [&](const YAML::Node& v, const std::string& kk) { w.max_frame_size = readInt<uint32_t>(v, kk, 1024, 0x7FFFFFFF); }},
    {"max_header_bytes", [&](const YAML::Node& v, const std::string& kk) { w.max_header_bytes = readInt<uint32_t>(v, kk, 1024, 1 << 20); }},
    {"handshake_timeout_ms", [&](const YAML::Node& v, const std::string& kk) { w.handshake_timeout_ms = readInt<uint32_t>(v, kk, 100, 600000); }},
  });
  return w;
}

// "host:port", "[v6]:port" or a bare host (port 1883).
BridgeConfig::Address readAddress(const YAML::Node& n, const std::string& k) {
  const std::string v = readString(n, k);
  BridgeConfig::Address a;
  std::string port;
  if (!v.empty() && v[0] == '[') {
    const size_t close = v.find(']');
    if (close == std::string::npos) throw ConfigError(lineOf(n), k + ": '" + v + "': missing ']'");
    a.host = v.substr(1, close - 1);
    if (close + 1 < v.size()) {
      if (v[close + 1] != ':') throw ConfigError(lineOf(n), k + ": '" + v + "': expected ':' after ']'");
      port = v.substr(close + 2);
    }
  } else {
    const size_t colon = v.rfind(':');
    if (colon != std::string::npos && v.find(':') != colon)
      throw ConfigError(lineOf(n), k + ": '" + v + "': write an IPv6 address as [address]:port");
    a.host = v.substr(0, colon);
    if (colon != std::string::npos) port = v.substr(colon + 1);
  }
  if (a.host.empty()) throw ConfigError(lineOf(n), k + ": '" + v + "': no host");
  if (!port.empty()) {
    char* end = nullptr;
    const long p = std::strtol(port.c_str(), &end, 10);
    if (*end != '\0' || p < 1 || p > 65535)
      throw ConfigError(lineOf(n), k + ": '" + v + "': the port must be 1..65535");
    a.port = static_cast<uint16_t>(p);
  }
  return a;
}

// A bridge's TLS: the CAs the remote's certificate must chain to (none:
// the system's), and optionally a client certificate.
tls::TlsConfig readClientTls(const YAML::Node& n, const std::string& k, BridgeConfig& b) {
  tls::TlsConfig t;
  readMap(n, k, {
    {"ca_file", str(t.ca_file)},
    {"ca_dir", str(t.ca_dir)},
    {"cert_file", str(t.cert_file)},
    {"key_file", str(t.key_file)},
    {"ciphers", str(t.ciphers)},
    {"ciphersuites", str(t.ciphersuites)},
    {"server_name", str(b.server_name)},
    {"verify_hostname", [&](const YAML::Node& v, const std::string& kk) { b.verify_hostname = readBool(v, kk); }},
    {"min_version", [&](const YAML::Node& v, const std::string& kk) {
       t.min_version = readString(v, kk);
       if (t.min_version != "1.2" && t.min_version != "1.3")
         throw ConfigError(lineOf(v), kk + ": '" + t.min_version + "' is not supported; use \"1.2\" or \"1.3\"");
     }},
  });
  if (t.cert_file.empty() != t.key_file.empty())
    throw ConfigError(lineOf(n), k + ": cert_file and key_file go together (the client certificate)");
  return t;
}

void parseBridges(const YAML::Node& n, const std::string& k, std::vector<BridgeConfig>& out) {
  if (n.IsNull()) return;
  if (!n.IsSequence()) throw ConfigError(lineOf(n), k + ": expected a list of bridges");
  for (size_t i = 0; i < n.size(); ++i) {
    BridgeConfig b;
    const std::string p = k + "[" + std::to_string(i) + "]";
    readMap(n[i], p, {
      {"name", [&](const YAML::Node& v, const std::string& kk) {
         b.name = readString(v, kk);
         const bool ok = !b.name.empty() && b.name.find_first_of("/+#") == std::string::npos;
         if (!ok) throw ConfigError(lineOf(v), kk + ": '" + b.name + "': a non-empty name without '/', '+' or '#'");
         for (const auto& other : out)
           if (other.name == b.name) throw ConfigError(lineOf(v), kk + ": a second bridge named '" + b.name + "'");
       }},
      {"address", [&](const YAML::Node& v, const std::string& kk) { b.addresses.push_back(readAddress(v, kk)); }},
      {"addresses", [&](const YAML::Node& v, const std::string& kk) {
         if (!v.IsSequence()) throw ConfigError(lineOf(v), kk + ": expected a list of host:port");
         for (size_t j = 0; j < v.size(); ++j) b.addresses.push_back(readAddress(v[j], kk + "[" + std::to_string(j) + "]"));
       }},
      {"protocol", [&](const YAML::Node& v, const std::string& kk) {
         const std::string m = readString(v, kk);
         if (m != "mqttv5" && m != "mqttv311") throw ConfigError(lineOf(v), kk + ": '" + m + "' is not one of mqttv5, mqttv311");
         b.v5 = m == "mqttv5";
       }},
      {"client_id", [&](const YAML::Node& v, const std::string& kk) { b.client_id = readString(v, kk); }},
      {"username", [&](const YAML::Node& v, const std::string& kk) { b.username = readString(v, kk); }},
      {"password", [&](const YAML::Node& v, const std::string& kk) { b.password = readString(v, kk); }},
      {"keepalive", [&](const YAML::Node& v, const std::string& kk) { b.keepalive = readInt<uint16_t>(v, kk, 1, 65535); }},
      {"clean_start", [&](const YAML::Node& v, const std::string& kk) { b.clean_start = readBool(v, kk); }},
      {"session_expiry", [&](const YAML::Node& v, const std::string& kk) { b.session_expiry = readInt<uint32_t>(v, kk, 0, 0xFFFFFFFFll); }},
      {"try_private", [&](const YAML::Node& v, const std::string& kk) { b.try_private = readBool(v, kk); }},
      {"tls", [&](const YAML::Node& v, const std::string& kk) { b.tls = readClientTls(v, kk, b); }},
      {"reconnect_min_ms", [&](const YAML::Node& v, const std::string& kk) { b.reconnect_min_ms = readInt<uint32_t>(v, kk, 10, 3600000); }},
      {"reconnect_max_ms", [&](const YAML::Node& v, const std::string& kk) { b.reconnect_max_ms = readInt<uint32_t>(v, kk, 10, 3600000); }},
      {"max_inflight", [&](const YAML::Node& v, const std::string& kk) { b.max_inflight = readInt<uint16_t>(v, kk, 1, 65535); }},
      {"queue", [&](const YAML::Node& v, const std::string& kk) {
         readMap(v, kk, {
           {"max_messages", [&](const YAML::Node& w, const std::string& kw) { b.queue_max_messages = readInt<uint32_t>(w, kw, 0, 0xFFFFFFFFll); }},
           {"max_bytes", [&](const YAML::Node& w, const std::string& kw) { b.queue_max_bytes = readInt<uint64_t>(w, kw, 0, 1ll << 50); }},
           {"qos0", [&](const YAML::Node& w, const std::string& kw) { b.queue_qos0 = readBool(w, kw); }},
         });
       }},
      {"topics", [&](const YAML::Node& v, const std::string& kk) {
         if (!v.IsSequence()) throw ConfigError(lineOf(v), kk + ": expected a list of topic rules");
         for (size_t j = 0; j < v.size(); ++j) {
           BridgeTopic t;
           const std::string tk = kk + "[" + std::to_string(j) + "]";
           bool has_pattern = false;
           readMap(v[j], tk, {
             {"pattern", [&](const YAML::Node& w, const std::string& kw) { t.pattern = readString(w, kw); has_pattern = true; }},
             {"direction", [&](const YAML::Node& w, const std::string& kw) {
                const std::string d = readString(w, kw);
                if (d == "out") t.direction = BridgeTopic::Direction::Out;
                else if (d == "in") t.direction = BridgeTopic::Direction::In;
                else if (d == "both") t.direction = BridgeTopic::Direction::Both;
                else throw ConfigError(lineOf(w), kw + ": '" + d + "' is not one of out, in, both");
              }},
             {"qos", [&](const YAML::Node& w, const std::string& kw) { t.qos = readInt<uint8_t>(w, kw, 0, 2); }},
             {"local_prefix", [&](const YAML::Node& w, const std::string& kw) { t.local_prefix = readString(w, kw); }},
             {"remote_prefix", [&](const YAML::Node& w, const std::string& kw) { t.remote_prefix = readString(w, kw); }},
           });
           if (!has_pattern) throw ConfigError(lineOf(v[j]), tk + ".pattern: required (\"\" with prefixes that are whole topics)");
           // The prefixes are plain topic levels, the filters valid on both sides.
           for (const std::string* pre : {&t.local_prefix, &t.remote_prefix})
             if (pre->find_first_of("+#") != std::string::npos)
               throw ConfigError(lineOf(v[j]), tk + ": a prefix must not contain '+' or '#'");
           if (!mqtt::validTopicFilter(t.localFilter()) || !mqtt::validTopicFilter(t.remoteFilter()))
             throw ConfigError(lineOf(v[j]), tk + ": '" + t.pattern + "' with its prefixes is not a valid topic filter");
           b.topics.push_back(std::move(t));
         }
       }},
    });
    if (!n[i].IsMap()) throw ConfigError(lineOf(n[i]), p + ": expected a mapping");
    if (b.name.empty()) throw ConfigError(lineOf(n[i]), p + ".name: required");
    if (b.addresses.empty()) throw ConfigError(lineOf(n[i]), p + ".address: required (or addresses)");
    if (b.topics.empty()) throw ConfigError(lineOf(n[i]), p + ".topics: at least one topic rule is needed");
    if (b.reconnect_max_ms < b.reconnect_min_ms)
      throw ConfigError(lineOf(n[i]), p + ".reconnect_max_ms: smaller than reconnect_min_ms");
    if (b.password && !b.username) throw ConfigError(lineOf(n[i]), p + ".password: needs username");
    out.push_back(std::move(b));
  }
}

// message_expiry: a list of {filter, seconds}, tried in order.
void readMessageExpiry(const YAML::Node& n, const std::string& k, MessageLifetimes& out) {
  if (n.IsNull()) return;
  if (!n.IsSequence()) throw ConfigError(lineOf(n), k + ": expected a list of {filter, seconds}");
  for (size_t i = 0; i < n.size(); ++i) {
    const std::string p = k + "[" + std::to_string(i) + "]";
    std::optional<std::string> filter;
    std::optional<uint32_t> seconds;
    int filter_line = 0;
    readMap(n[i], p, {
      {"filter", [&](const YAML::Node& v, const std::string& kk) {
         filter = readString(v, kk);
         filter_line = lineOf(v);
       }},
      {"seconds", [&](const YAML::Node& v, const std::string& kk) {
         seconds = readInt<uint32_t>(v, kk, 0, 0xFFFFFFFFll);
       }},
    });
    if (n[i].IsNull()) throw ConfigError(lineOf(n[i]), p + ": expected {filter, seconds}");
    if (!filter) throw ConfigError(lineOf(n[i]), p + ".filter: required");
    if (!seconds) throw ConfigError(lineOf(n[i]), p + ".seconds: required");
    if (!out.add(*filter, *seconds))
      throw ConfigError(filter_line, p + ".filter: '" + *filter +
                                         "' is not a topic filter ('+' and '#' alone in their level, '#' last; "
                                         "not a $share filter)");
  }
}

ShareStrategy readStrategy(const YAML::Node& v, const std::string& kk) {
  ShareStrategy st;
  if (!parseShareStrategy(readString(v, kk), st))
    throw ConfigError(lineOf(v), kk + ": '" + v.Scalar() +
                                     "' is not one of round_robin, random, sticky, hash_clientid, "
                                     "hash_topic, least_inflight");
  return st;
}

// queues: declared queues (src/queues/).
void parseQueues(const YAML::Node& n, const std::string& k, std::vector<QueueConfig>& out) {
  if (n.IsNull()) return;
  if (!n.IsSequence()) throw ConfigError(lineOf(n), k + ": expected a list of queues");
  for (size_t i = 0; i < n.size(); ++i) {
    const std::string p = k + "[" + std::to_string(i) + "]";
    if (!n[i].IsMap()) throw ConfigError(lineOf(n[i]), p + ": expected a mapping");
    QueueConfig q;
    auto filter = [&](const YAML::Node& v, const std::string& kk) {
      const std::string f = readString(v, kk);
      mqtt::SharedFilter sf;
      if (!mqtt::validTopicFilter(f) || !mqtt::parseSharedFilter(f, sf) || sf.shared ||
          f.rfind("$queue/", 0) == 0)
        throw ConfigError(lineOf(v), kk + ": '" + f + "' is not a valid topic filter (nor a shared one)");
      for (const auto& other : q.filters)
        if (other == f) throw ConfigError(lineOf(v), kk + ": '" + f + "' is listed twice");
      q.filters.push_back(f);
    };
    readMap(n[i], p, {
      {"name", [&](const YAML::Node& v, const std::string& kk) {
         q.name = readString(v, kk);
         const bool ok = !q.name.empty() && q.name.find_first_of("/+#") == std::string::npos;
         if (!ok) throw ConfigError(lineOf(v), kk + ": '" + q.name + "': a non-empty name without '/', '+' or '#'");
         for (const auto& other : out)
           if (other.name == q.name) throw ConfigError(lineOf(v), kk + ": a second queue named '" + q.name + "'");
       }},
      {"filter", filter},
      {"filters", [&](const YAML::Node& v, const std::string& kk) {
         if (!v.IsSequence()) throw ConfigError(lineOf(v), kk + ": expected a list of topic filters");
         for (size_t j = 0; j < v.size(); ++j) filter(v[j], kk + "[" + std::to_string(j) + "]");
       }},
      {"strategy", [&](const YAML::Node& v, const std::string& kk) { q.strategy = readStrategy(v, kk); }},
      {"max_messages", [&](const YAML::Node& v, const std::string& kk) { q.max_messages = readInt<uint32_t>(v, kk, 0, 0xFFFFFFFFll); }},
      {"max_bytes", [&](const YAML::Node& v, const std::string& kk) { q.max_bytes = readInt<uint64_t>(v, kk, 0, 1ll << 50); }},
      {"message_ttl", [&](const YAML::Node& v, const std::string& kk) { q.message_ttl = readInt<uint32_t>(v, kk, 0, 0xFFFFFFFFll); }},
      {"retention", [&](const YAML::Node& v, const std::string& kk) { q.retention = readInt<uint32_t>(v, kk, 0, 0xFFFFFFFFll); }},
      {"qos0", [&](const YAML::Node& v, const std::string& kk) {
         const std::string m = readString(v, kk);
         if (m != "queue" && m != "drop") throw ConfigError(lineOf(v), kk + ": '" + m + "' is not one of queue, drop");
         q.qos0_queue = m == "queue";
       }},
    });
    if (q.name.empty()) throw ConfigError(lineOf(n[i]), p + ".name: required");
    if (q.filters.empty()) throw ConfigError(lineOf(n[i]), p + ".filters: at least one topic filter is needed");
    out.push_back(std::move(q));
  }
}

void readHttp(const YAML::Node& n, const std::string& k, HttpConfig& h, int& basic_auth_line) {
  readMap(n, k, {
    {"enabled", [&](const YAML::Node& v, const std::string& kk) { h.enabled = readBool(v, kk); }},
    {"address", [&](const YAML::Node& v, const std::string& kk) { h.address = readString(v, kk); }},
    {"port", [&](const YAML::Node& v, const std::string& kk) { h.port = readInt<uint16_t>(v, kk, 0, 65535); }},
    {"tls", [&](const YAML::Node& v, const std::string& kk) {
       h.tls = readTls(v, kk);
       if (h.tls->require_certificate || h.tls->use_identity_as_username)
         throw ConfigError(lineOf(v), kk + ": client certificates are not supported on the HTTP endpoint");
     }},
    {"basic_auth", [&](const YAML::Node& v, const std::string& kk) {
       h.basic_auth = readBool(v, kk);
       basic_auth_line = lineOf(v);
     }},
  });
}

// A NATS token: what the cluster's name becomes in every subject.
bool natsToken(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char ch : s)
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
      return false;
  return true;
}

void readCluster(const YAML::Node& n, const std::string& k, ClusterConfig& cl) {
  cl.enabled = true;
  readMap(n, k, {
    {"servers", [&](const YAML::Node& v, const std::string& kk) {
       if (!v.IsSequence() || v.size() == 0)
         throw ConfigError(lineOf(v), kk + ": expected a list of NATS server URLs (nats://host:port)");
       for (size_t i = 0; i < v.size(); ++i) {
         const std::string url = readString(v[i], kk + "[" + std::to_string(i) + "]");
         if (url.rfind("nats://", 0) != 0 && url.rfind("tls://", 0) != 0)
           throw ConfigError(lineOf(v[i]), kk + "[" + std::to_string(i) + "]: '" + url +
                                               "' is not a NATS URL (nats://host:port or tls://host:port)");
         cl.servers.push_back(url);
       }
     }},
    {"name", [&](const YAML::Node& v, const std::string& kk) {
       cl.name = readString(v, kk);
       if (!natsToken(cl.name))
         throw ConfigError(lineOf(v), kk + ": '" + cl.name + "' must be 1 to 64 of A-Z a-z 0-9 - _");
     }},
    {"node", [&](const YAML::Node& v, const std::string& kk) {
       cl.node = readString(v, kk);
       if (cl.node.empty()) throw ConfigError(lineOf(v), kk + ": must not be empty");
     }},
    {"user", str(cl.user)},
    {"password", str(cl.password)},
    {"token", str(cl.token)},
    {"ca_file", str(cl.ca_file)},
    {"cert_file", str(cl.cert_file)},
    {"key_file", str(cl.key_file)},
    {"max_pending_mb", [&](const YAML::Node& v, const std::string& kk) {
       cl.max_pending_bytes = readInt<uint64_t>(v, kk, 1, 4095) << 20;  // a batch's offsets are 32-bit
     }},
    {"jetstream", [&](const YAML::Node& v, const std::string& kk) { cl.jetstream = readBool(v, kk); }},
    {"store_replica", [&](const YAML::Node& v, const std::string& kk) { cl.store_replica = readBool(v, kk); }},
    {"replicas", [&](const YAML::Node& v, const std::string& kk) { cl.replicas = readInt<int>(v, kk, 1, 5); }},
    {"group_ack_wait", [&](const YAML::Node& v, const std::string& kk) {
       cl.group_ack_wait_s = readInt<uint32_t>(v, kk, 3, 86400);
     }},
  });
  if (n.IsNull() || !n.IsMap()) throw ConfigError(lineOf(n), k + ": expected a mapping with servers");
  if (cl.servers.empty()) throw ConfigError(lineOf(n), k + ".servers: at least one NATS server URL is needed");
  if (cl.password && !cl.user) throw ConfigError(lineOf(n), k + ".password: needs user");
  if (cl.token && cl.user) throw ConfigError(lineOf(n), k + ".token: use either user/password or token");
  if (cl.cert_file.empty() != cl.key_file.empty())
    throw ConfigError(lineOf(n), k + ": cert_file and key_file go together");
}

void parseRoot(const YAML::Node& root, Config& c) {
  const long long u16max = 65535, u32max = 0xFFFFFFFFll;
  int basic_auth_line = 0;
  readMap(root, "", {
    {"http", [&](const YAML::Node& n, const std::string& k) { readHttp(n, k, c.http, basic_auth_line); }},
    {"cluster", [&](const YAML::Node& n, const std::string& k) { readCluster(n, k, c.cluster); }},
    {"log_level", [&](const YAML::Node& n, const std::string& k) {
       if (!parseLogLevel(readString(n, k), c.log_level))
         throw ConfigError(lineOf(n), k + ": '" + n.Scalar() +
                                          "' is not one of debug, info, notice, warning, error");
     }},
    {"workers", [&](const YAML::Node& n, const std::string& k) {
       if (n.IsScalar() && n.Scalar() == "auto") {
         c.workers = 0;
         return;
       }
       try {
         c.workers = readInt<uint32_t>(n, k, 1, kMaxWorkers);
       } catch (const ConfigError&) {
         throw ConfigError(lineOf(n), k + ": expected auto or a number of event loops from 1 to " +
                                          std::to_string(kMaxWorkers) + ", got '" + (n.IsScalar() ? n.Scalar() : "") + "'");
       }
     }},
    {"listeners", [&](const YAML::Node& n, const std::string& k) {
       if (!n.IsSequence()) throw ConfigError(lineOf(n), k + ": expected a list of listeners");
       c.listeners.clear();
       for (size_t i = 0; i < n.size(); ++i) {
         ListenerConfig l;
         const std::string p = k + "[" + std::to_string(i) + "]";
         std::optional<bool> anonymous;
         readMap(n[i], p, {
           {"address", [&](const YAML::Node& v, const std::string& kk) { l.address = readString(v, kk); }},
           {"port", [&](const YAML::Node& v, const std::string& kk) { l.port = readInt<uint16_t>(v, kk, 0, 65535); }},
           {"tls", [&](const YAML::Node& v, const std::string& kk) { l.tls = readTls(v, kk); }},
           {"allow_anonymous", [&](const YAML::Node& v, const std::string& kk) { anonymous = readBool(v, kk); }},
           {"websocket", [&](const YAML::Node& v, const std::string& kk) { l.websocket = readWebSocket(v, kk); }},
         });
         // Secure by default: anonymous clients only on loopback unless the
         // configuration says otherwise.
         l.allow_anonymous = anonymous.value_or(isLoopbackAddress(l.address));
         c.listeners.push_back(l);
       }
       if (c.listeners.empty()) throw ConfigError(lineOf(n), k + ": at least one listener is needed");
     }},
    {"limits", [&](const YAML::Node& n, const std::string& k) {
       readMap(n, k, {
         {"max_packet_size", [&](const YAML::Node& v, const std::string& kk) { c.max_packet_size = readInt<uint32_t>(v, kk, 16, 268435460); }},
         {"max_inflight", [&](const YAML::Node& v, const std::string& kk) { c.max_inflight = readInt<uint16_t>(v, kk, 1, u16max); }},
         {"max_queued_messages", [&](const YAML::Node& v, const std::string& kk) { c.max_queued_messages = readInt<uint32_t>(v, kk, 0, u32max); }},
         {"max_connections", [&](const YAML::Node& v, const std::string& kk) { c.max_connections = readInt<uint32_t>(v, kk, 0, u32max); }},
         {"max_topic_levels", [&](const YAML::Node& v, const std::string& kk) { c.max_topic_levels = readInt<uint32_t>(v, kk, 1, 65535); }},
         {"max_keepalive", [&](const YAML::Node& v, const std::string& kk) { c.max_keepalive = readInt<uint16_t>(v, kk, 0, u16max); }},
         {"max_session_expiry", [&](const YAML::Node& v, const std::string& kk) { c.max_session_expiry = readInt<uint32_t>(v, kk, 0, u32max); }},
         {"max_connect_wait", [&](const YAML::Node& v, const std::string& kk) { c.max_connect_wait = readInt<uint32_t>(v, kk, 1, 86400); }},
         {"max_queued_bytes", [&](const YAML::Node& v, const std::string& kk) { c.max_queued_bytes = readInt<uint64_t>(v, kk, 0, 1ll << 50); }},
         {"max_client_output", [&](const YAML::Node& v, const std::string& kk) { c.max_client_output = readInt<uint64_t>(v, kk, 1 << 20, 1ll << 40); }},
         {"max_output_memory", [&](const YAML::Node& v, const std::string& kk) {
            if (v.IsScalar() && v.Scalar() == "auto") {
              c.max_output_memory = 0;
              return;
            }
            try {
              c.max_output_memory = readInt<uint64_t>(v, kk, 1 << 20, 1ll << 44);
            } catch (const ConfigError&) {
              throw ConfigError(lineOf(v), kk + ": expected auto or a number of bytes from 1048576 to " +
                                               std::to_string(1ll << 44) + ", got '" + (v.IsScalar() ? v.Scalar() : "") + "'");
            }
          }},
       });
     }},
    {"shared", [&](const YAML::Node& n, const std::string& k) {
       auto strategy = readStrategy;
       readMap(n, k, {
         {"strategy", [&](const YAML::Node& v, const std::string& kk) { c.shared_strategy = strategy(v, kk); }},
         {"max_queued_messages", [&](const YAML::Node& v, const std::string& kk) { c.shared_max_queued = readInt<uint32_t>(v, kk, 0, u32max); }},
         {"groups", [&](const YAML::Node& v, const std::string& kk) {
            if (v.IsNull()) return;
            if (!v.IsMap()) throw ConfigError(lineOf(v), kk + ": expected a mapping of share name to strategy");
            for (const auto& g : v) {
              const std::string name = g.first.Scalar();
              c.shared_group_strategies[name] = strategy(g.second, kk + "." + name);
            }
          }},
       });
     }},
    {"persistence", [&](const YAML::Node& n, const std::string& k) {
       readMap(n, k, {
         {"enabled", [&](const YAML::Node& v, const std::string& kk) { c.persistence = readBool(v, kk); }},
         {"dir", [&](const YAML::Node& v, const std::string& kk) {
            c.data_dir = readString(v, kk);
            if (c.data_dir.empty()) throw ConfigError(lineOf(v), kk + ": must not be empty");
          }},
         {"sync", [&](const YAML::Node& v, const std::string& kk) {
            const std::string m = readString(v, kk);
            if (m != "fsync" && m != "periodic")
              throw ConfigError(lineOf(v), kk + ": '" + m + "' is not one of fsync, periodic");
            c.sync_fsync = m == "fsync";
          }},
         {"sync_interval_ms", [&](const YAML::Node& v, const std::string& kk) { c.sync_interval_ms = readInt<uint32_t>(v, kk, 1, 60000); }},
         {"max_size_mb", [&](const YAML::Node& v, const std::string& kk) { c.max_store_mb = readInt<uint64_t>(v, kk, 1, 1ll << 30); }},
         {"on_corrupt", [&](const YAML::Node& v, const std::string& kk) {
            const std::string m = readString(v, kk);
            if (m != "fail" && m != "move_aside")
              throw ConfigError(lineOf(v), kk + ": '" + m + "' is not one of fail, move_aside");
            c.on_corrupt_move_aside = m == "move_aside";
          }},
       });
     }},
    {"delayed", [&](const YAML::Node& n, const std::string& k) {
       readMap(n, k, {
         {"enabled", [&](const YAML::Node& v, const std::string& kk) { c.delayed.enabled = readBool(v, kk); }},
         {"max_delay", [&](const YAML::Node& v, const std::string& kk) { c.delayed.max_delay = readInt<uint32_t>(v, kk, 1, 42949670); }},
         {"max_pending", [&](const YAML::Node& v, const std::string& kk) { c.delayed.max_pending = readInt<uint64_t>(v, kk, 1, u32max); }},
         {"ram_window", [&](const YAML::Node& v, const std::string& kk) { c.delayed.ram_window = readInt<uint32_t>(v, kk, 1, 1000000); }},
       });
     }},
    {"auth", [&](const YAML::Node& n, const std::string& k) {
       readMap(n, k, {
         {"password_file", [&](const YAML::Node& v, const std::string& kk) { c.password_file = readString(v, kk); }},
         {"acl_file", [&](const YAML::Node& v, const std::string& kk) { c.acl_file = readString(v, kk); }},
       });
     }},
    {"bridges", [&](const YAML::Node& n, const std::string& k) { parseBridges(n, k, c.bridges); }},
    {"queues", [&](const YAML::Node& n, const std::string& k) { parseQueues(n, k, c.queues); }},
    {"mqtt", [&](const YAML::Node& n, const std::string& k) {
       readMap(n, k, {
         {"max_qos", [&](const YAML::Node& v, const std::string& kk) { c.max_qos = readInt<uint8_t>(v, kk, 0, 2); }},
         {"retain_available", [&](const YAML::Node& v, const std::string& kk) { c.retain_available = readBool(v, kk); }},
         {"topic_alias_maximum", [&](const YAML::Node& v, const std::string& kk) { c.topic_alias_maximum = readInt<uint16_t>(v, kk, 0, u16max); }},
         {"outbound_topic_aliases", [&](const YAML::Node& v, const std::string& kk) { c.outbound_topic_aliases = readInt<uint16_t>(v, kk, 0, u16max); }},
         {"allow_zero_length_clientid", [&](const YAML::Node& v, const std::string& kk) { c.allow_zero_length_clientid = readBool(v, kk); }},
         {"sys_interval", [&](const YAML::Node& v, const std::string& kk) { c.sys_interval = readInt<uint32_t>(v, kk, 0, 86400); }},
         {"max_message_expiry", [&](const YAML::Node& v, const std::string& kk) { c.message_expiry.setCap(readInt<uint32_t>(v, kk, 0, u32max)); }},
       });
     }},
    {"message_expiry", [&](const YAML::Node& n, const std::string& k) { readMessageExpiry(n, k, c.message_expiry); }},
  });
  if (c.http.basic_auth && c.password_file.empty())
    throw ConfigError(basic_auth_line, "http.basic_auth: needs auth.password_file (its users are the HTTP users)");
}

}  // namespace

bool isLoopbackAddress(const std::string& address) {
  if (address == "::1" || address == "localhost") return true;
  in_addr a4;
  if (inet_pton(AF_INET, address.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6;
  if (inet_pton(AF_INET6, address.c_str(), &a6) == 1) {
    // ::ffff:127.x.y.z, an IPv4-mapped loopback address.
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(a6.s6_addr, mapped, 12) == 0 && a6.s6_addr[12] == 127;
  }
  return false;
}

bool loadConfig(const std::string& path, Config& out, std::string& error) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    error = path + ": cannot open the configuration file";
    return false;
  } catch (const YAML::ParserException& e) {
    error = path + ":" + std::to_string(e.mark.line + 1) + ": YAML syntax error: " + e.msg;
    return false;
  }
  Config c;
  try {
    parseRoot(root, c);
    // A WebSocket frame may by default hold the largest packet and a few
    // small ones (limits may come after the listeners in the file).
    for (auto& l : c.listeners)
      if (l.websocket && l.websocket->max_frame_size == 0)
        l.websocket->max_frame_size = c.max_packet_size + WebSocketConfig::kFrameSlack;
  } catch (const ConfigError& e) {
    error = path + ":" + std::to_string(e.line) + ": " + e.what() + " (line " +
            std::to_string(e.line) + ")";
    return false;
  } catch (const YAML::Exception& e) {
    error = path + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg;
    return false;
  }
  out = std::move(c);
  return true;
}

}  // namespace petrel
