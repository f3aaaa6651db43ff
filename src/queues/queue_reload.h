// src/queues/queue_reload.h — what a reload of `queues:` (SIGHUP) changes:
// the queues added, removed and changed between two configurations, and
// how a change reads in the log. Pure, so it is tested without a broker
// (tests/unit/src/queues); SharedGroups::applyQueues acts on it.
#pragma once

#include <string>
#include <vector>

#include "src/config/config.h"

namespace petrel {

struct QueueChanges {
  std::vector<std::string> added;    // in the order of the new configuration
  std::vector<std::string> removed;  // in the order of the old one
  std::vector<std::string> changed;  // a parameter or a filter differs
  bool empty() const { return added.empty() && removed.empty() && changed.empty(); }
};

// Queues are matched by name.
QueueChanges diffQueues(const std::vector<QueueConfig>& before, const std::vector<QueueConfig>& after);

// The filters of `a` that `b` does not list, in the order of `a`.
std::vector<std::string> filtersNotIn(const QueueConfig& a, const QueueConfig& b);

// True when nothing of `a` and `b` differs (filters and their order too).
bool sameQueue(const QueueConfig& a, const QueueConfig& b);

// What changed from `a` to `b`, for the log, e.g.
// "max_messages 100 -> 200, filter added a/#, filter removed b/#".
std::string describeQueueChange(const QueueConfig& a, const QueueConfig& b);

}  // namespace petrel
