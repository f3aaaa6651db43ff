// src/metrics/stats.h — the broker-wide counters every part adds to, read
// by the $SYS publisher (sys_topics.h) and the operator's endpoints
// (monitor.h).
#pragma once

#include <cstddef>
#include <cstdint>

namespace petrel {

// Why a CONNECT was refused (petrel_connections_refused_total{reason}).
enum class Refusal : uint8_t {
  Limit,     // limits.max_connections
  Auth,      // bad user name or password, not authorized, enhanced auth
  ClientId,  // client identifier not valid (or reserved)
  Protocol,  // malformed CONNECT, unsupported protocol level
  Other,     // will, keep alive and other checks
};
inline constexpr size_t kRefusalKinds = 5;
inline constexpr const char* kRefusalNames[kRefusalKinds] = {"limit", "auth", "client_id", "protocol", "other"};

struct BrokerStats {
  uint64_t messages_received = 0;
  uint64_t messages_delivered = 0;
  uint64_t messages_dropped = 0;     // queue limit, packet size, expiry, output budget
  uint64_t messages_expired = 0;     // of those: copies whose lifetime ran out before delivery
  uint64_t qos0_dropped_output = 0;  // QoS 0 to a client over its output budget
  uint64_t connections_total = 0;

  // For monitoring (monitor.h); one increment where each happens.
  uint64_t received_by_qos[3] = {};  // PUBLISH received, by its QoS
  uint64_t sent_by_qos[3] = {};      // PUBLISH sent, by the QoS sent
  uint64_t bytes_received = 0;       // MQTT bytes (plaintext, after TLS)
  uint64_t bytes_sent = 0;
  // The other reasons of messages_dropped (expired and output budget above).
  uint64_t dropped_queue_full = 0;   // a queue limit, or the store's size cap
  uint64_t dropped_too_large = 0;    // above the receiver's Maximum Packet Size
  uint64_t dropped_not_authorized = 0;  // no member of a share group may read it
  uint64_t connects_accepted = 0;    // CONNECTs accepted
  uint64_t connections_refused[kRefusalKinds] = {};
  uint64_t clients_connected = 0;    // connections of clients past CONNECT, not closing
  uint64_t clients_maximum = 0;      // the most clients_connected at once
  uint64_t sessions_expired = 0;
  // Reads of a subscriber whose window was full, made between other
  // connections' reads, that found its acknowledgements
  // (src/transport/ack_poller.h).
  uint64_t ack_reads_between_reads = 0;
};

}  // namespace petrel
