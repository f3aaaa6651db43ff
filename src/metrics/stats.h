// src/metrics/stats.h — the broker-wide counters every part adds to, read
// by the $SYS publisher (sys_topics.h).
#pragma once

#include <cstdint>

namespace petrel {

struct BrokerStats {
  uint64_t messages_received = 0;
  uint64_t messages_delivered = 0;
  uint64_t messages_dropped = 0;     // queue limit, packet size, expiry, output budget
  uint64_t messages_expired = 0;     // of those: copies whose lifetime ran out before delivery
  uint64_t qos0_dropped_output = 0;  // QoS 0 to a client over its output budget
  uint64_t connections_total = 0;
};

}  // namespace petrel
