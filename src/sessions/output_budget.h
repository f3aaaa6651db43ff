// src/sessions/output_budget.h — what the broker does when clients read
// slower than messages arrive for them (policy: output_budget.cpp and the
// README, "Flow control and memory").
//
// Owns: the total of output buffered for all clients and how many clients
// are above the high-water mark. May call: Connection (its buffered size).
#pragma once

#include <cstdint>

#include "src/config/config.h"
#include "src/metrics/stats.h"
#include "src/transport/connection.h"

namespace petrel {

class Session;

class OutputBudget {
 public:
  OutputBudget(const Config& cfg, BrokerStats& stats) : cfg_(cfg), stats_(stats) {}

  // Brings the total up to date with `c` (after a flush, a write, a close).
  void account(Connection& c);
  // `c` is being freed: its share leaves the total.
  void remove(Connection& c);
  // False when a QoS 0 message for `c` must be dropped because its
  // buffered output is over its budget (counted and logged).
  bool qos0Allowed(const Session& s, Connection& c);
  uint64_t total() const { return total_; }

 private:
  const Config& cfg_;
  BrokerStats& stats_;
  uint64_t total_ = 0;
  size_t congested_ = 0;  // connections above Connection::kOutputHighWater
};

}  // namespace petrel
