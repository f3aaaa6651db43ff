// src/sessions/output_budget.h — what the broker does when clients read
// slower than messages arrive for them (policy: output_budget.cpp and the
// README, "Flow control and memory").
//
// Owns: the total of output buffered for all clients and how many clients
// are above the high-water mark. May call: Connection (its buffered size),
// util/cgroup_limits.h (the memory limit that auto sizes the total by).
#pragma once

#include <cstdint>
#include <string>

#include "src/config/config.h"
#include "src/metrics/stats.h"
#include "src/transport/connection.h"

namespace petrel {

class Session;

class OutputBudget {
 public:
  // limits.max_output_memory: auto is sized here, from the process's
  // cgroup memory limit and the machine's RAM.
  OutputBudget(const Config& cfg, BrokerStats& stats);

  // Brings the total up to date with `c` (after a flush, a write, a close).
  void account(Connection& c);
  // `c` is being freed: its share leaves the total.
  void remove(Connection& c);
  // False when a QoS 0 message for `c` must be dropped because its
  // buffered output is over its budget (counted and logged). Asked only
  // when `c` has Connection::kOutputHighWater or more waiting; brings the
  // total up to date with it.
  bool qos0Allowed(const Session& s, Connection& c);
  uint64_t total() const { return total_; }
  // Output for all clients together (limits.max_output_memory, or what
  // auto made of it).
  uint64_t limit() const { return limit_; }
  // How auto sized the limit, for the start-up log; empty when configured.
  const std::string& sizedBy() const { return sized_by_; }

 private:
  const Config& cfg_;
  BrokerStats& stats_;
  uint64_t limit_;
  std::string sized_by_;
  uint64_t total_ = 0;
  size_t congested_ = 0;  // connections above Connection::kOutputHighWater
};

}  // namespace petrel
