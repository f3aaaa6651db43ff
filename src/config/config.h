// src/config/config.h — the broker configuration, read from YAML (config.yaml at the
// repository root documents every key). Loading is strict: an unknown key or a
// value of the wrong type or range is an error naming the key and its line.
#pragma once

#include <cstdint>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "src/util/log.h"
#include "src/queues/shared_group.h"
#include "src/routing/message_lifetimes.h"
#include "src/transport/websocket_config.h"
#include "tls/tls_config.h"

namespace petrel {

struct ListenerConfig {
  std::string address = "127.0.0.1";
  uint16_t port = 1883;
  // Present for a TLS listener (the `tls:` mapping).
  std::optional<tls::TlsConfig> tls;
  // Clients without a user name (or certificate identity) are accepted.
  // When the key is absent: true on a loopback address, false elsewhere.
  bool allow_anonymous = true;
  // Present for MQTT over WebSocket (the `websocket:` mapping), over TLS
  // when `tls` is present too.
  std::optional<WebSocketConfig> websocket;
};

// One topic rule of a bridge, as mosquitto's `topic` line: `pattern`
// prefixed with `local_prefix` on this side and `remote_prefix` on the
// remote side (an empty pattern: the prefixes are the whole topics).
struct BridgeTopic {
  enum class Direction : uint8_t { Out, In, Both };
  std::string pattern;
  Direction direction = Direction::Out;
  uint8_t qos = 1;
  std::string local_prefix;
  std::string remote_prefix;
  bool out() const { return direction != Direction::In; }
  bool in() const { return direction != Direction::Out; }
  std::string localFilter() const { return local_prefix + pattern; }
  std::string remoteFilter() const { return remote_prefix + pattern; }
};

// A bridge: a client connection from Petrel to a remote broker, with a
// durable queue of what goes out (bridges/).
struct BridgeConfig {
  std::string name;
  // "host:port" (IPv6: "[::1]:1883"), tried in turn when one fails.
  struct Address {
    std::string host;
    uint16_t port = 1883;
  };
  std::vector<Address> addresses;
  bool v5 = true;            // protocol: mqttv5 | mqttv311
  std::string client_id;     // default "<host name>.<name>"
  std::optional<std::string> username;
  std::optional<std::string> password;
  uint16_t keepalive = 60;
  bool clean_start = false;  // a persistent session on the remote side
  uint32_t session_expiry = 0xFFFFFFFF;  // MQTT 5, with clean_start false
  bool try_private = true;   // MQTT 3.1.1: announce a bridge (protocol level | 0x80)
  std::optional<tls::TlsConfig> tls;  // ca_file/ca_dir, cert_file/key_file
  bool verify_hostname = true;
  std::string server_name;   // certificate name to verify; default: the host
  uint32_t reconnect_min_ms = 1000;
  uint32_t reconnect_max_ms = 60000;
  uint16_t max_inflight = 100;
  uint32_t queue_max_messages = 1000000;  // 0 = no limit
  uint64_t queue_max_bytes = 0;            // payload bytes, 0 = no limit
  bool queue_qos0 = false;  // QoS 0 messages are queued (and sent at QoS 1)
  std::vector<BridgeTopic> topics;
};

// True for 127.0.0.0/8, ::1 and "localhost".
bool isLoopbackAddress(const std::string& address);

// delayed: publishes to $delayed/<N>/<topic> (src/delayed/).
struct DelayedConfig {
  bool enabled = true;
  uint32_t max_delay = 42949670;  // seconds ahead at most (the topic form's horizon)
  uint64_t max_pending = 1000000;
  uint32_t ram_window = 1000;     // earliest pending entries kept in RAM (with a store)
};

// queues: a queue declared ahead of its consumers (src/queues/): the
// share group(s) `$share/<name>/<filter>`, one per filter, created at
// start-up, persisted, never dropped for being unused.
struct QueueConfig {
  std::string name;
  std::vector<std::string> filters;
  std::optional<ShareStrategy> strategy;  // default: shared.strategy
  uint32_t max_messages = 0;  // 0: shared.max_queued_messages
  uint64_t max_bytes = 0;     // payload bytes, 0 = no limit
  uint32_t message_ttl = 0;   // seconds, for messages without an expiry; 0 = none
  uint32_t retention = 0;     // seconds an entry is kept once queued; 0 = no limit
  bool qos0_queue = true;     // qos0: queue (RAM only) | drop
};

// http: the operators' HTTP endpoint (src/httpd/): /metrics, /healthz,
// /readyz, /api/v1/stats and the status page. Off unless enabled.
struct HttpConfig {
  bool enabled = false;
  std::string address = "127.0.0.1";
  uint16_t port = 8080;
  std::optional<tls::TlsConfig> tls;  // HTTPS
  bool basic_auth = false;            // users of auth.password_file
};

// cluster: several nodes as one broker over NATS (src/cluster/). Absent:
// the node runs alone.
struct ClusterConfig {
  bool enabled = false;               // the section is present
  std::vector<std::string> servers;   // nats://host:port, tls://host:port
  std::string name = "petrel";        // the nodes of one cluster share it (subject prefix)
  std::string node;                   // this node's name; default: the host name
  std::optional<std::string> user;
  std::optional<std::string> password;
  std::optional<std::string> token;
  std::string ca_file;                // TLS to NATS: the servers' CA,
  std::string cert_file;              // and this node's certificate
  std::string key_file;               // and key, when NATS asks for one
  // Messages from other nodes waiting for this node's loop, in bytes;
  // beyond, they are dropped and counted.
  uint64_t max_pending_bytes = 64ull << 20;
  // JetStream (the server's, for the buckets of retained messages and of
  // the session registry); false: retained messages stay on the node they
  // were published on, and a client id may be connected to two nodes.
  bool jetstream = true;
  // With JetStream and persistence: the node's store kept in the stream
  // <name>_replica too (src/cluster/store_replica.h); false: on its disk alone.
  bool store_replica = true;
  int replicas = 1;                   // copies JetStream keeps of the buckets and the stream (1..5)
  // Seconds a share group message taken by a node and not acknowledged
  // waits in JetStream before it goes to another node: how long what a
  // killed node held takes to reach the group's other members. A node
  // keeps what its members hold from this wait (every third of it).
  uint32_t group_ack_wait_s = 30;
};

// The most event loops `workers:` may ask for.
constexpr uint32_t kMaxWorkers = 256;

struct Config {
  LogLevel log_level = LogLevel::Info;
  // Event loops carrying client connections (src/transport/io_workers.h):
  // 1 = everything on the main loop; 0 = one per core ("auto").
  uint32_t workers = 0;
  std::vector<ListenerConfig> listeners{ListenerConfig{}};

  // limits:
  uint32_t max_packet_size = 1048576;
  uint16_t max_inflight = 100;
  uint32_t max_queued_messages = 10000;
  uint32_t max_connections = 0;
  uint32_t max_topic_levels = 128;
  uint16_t max_keepalive = 65535;
  uint32_t max_session_expiry = 0xFFFFFFFF;
  // Seconds a CONNECT the broker itself holds (its password being checked,
  // its session on its way from another node) may wait before it is
  // answered Server unavailable. The default is longer than the cluster's
  // longest wait (SessionMoves::kAdoptWaitMs, 60 s).
  uint32_t max_connect_wait = 120;

  uint64_t max_queued_bytes = 0;  // per session, payload bytes; 0 = no limit
  // Output buffered for one client (bytes not yet taken by its socket)
  // beyond which QoS 0 messages for that client are dropped and counted.
  uint64_t max_client_output = 256ull << 20;
  // Output buffered for all clients together; above it, the clients with
  // the largest buffers are held to an equal share of it (their QoS 0 is
  // dropped), so that memory stays bounded whoever stops reading.
  // 0 = auto: a quarter of the memory the process may use (its cgroup's
  // limit or the machine's RAM), at most 1 GiB (src/util/cgroup_limits.h).
  uint64_t max_output_memory = 0;

  // persistence:
  bool persistence = true;
  std::string data_dir = "./data";
  bool sync_fsync = true;          // sync: fsync | periodic
  uint32_t sync_interval_ms = 200;
  uint64_t max_store_mb = 4096;
  bool on_corrupt_move_aside = false;  // on_corrupt: fail | move_aside

  // shared:
  ShareStrategy shared_strategy = ShareStrategy::RoundRobin;
  std::map<std::string, ShareStrategy> shared_group_strategies;
  uint32_t shared_max_queued = 100000;

  // mqtt:
  uint8_t max_qos = 2;
  bool retain_available = true;
  uint16_t topic_alias_maximum = 10;
  uint16_t outbound_topic_aliases = 0;
  bool allow_zero_length_clientid = true;
  uint32_t sys_interval = 10;  // seconds between $SYS updates, 0 = off

  // message_expiry: (default lifetimes by topic filter) and
  // mqtt.max_message_expiry (the cap on every lifetime).
  MessageLifetimes message_expiry;
  DelayedConfig delayed;

  // auth: (empty = not used)
  std::string password_file;  // mosquitto_passwd format
  std::string acl_file;       // mosquitto acl_file format

  // bridges:
  std::vector<BridgeConfig> bridges;

  // queues:
  std::vector<QueueConfig> queues;
  // http:
  HttpConfig http;
  // cluster:
  ClusterConfig cluster;
};

// Reads `path` into `out`. On failure returns false and sets `error` to a
// message such as "config.yaml:12: limits.max_pakcet_size: unknown key".
bool loadConfig(const std::string& path, Config& out, std::string& error);

}  // namespace petrel
