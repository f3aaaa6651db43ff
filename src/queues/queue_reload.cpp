// What a reload of `queues:` changes (see queue_reload.h).
#include "src/queues/queue_reload.h"

#include <algorithm>

#include "src/queues/shared_group.h"

namespace petrel {

namespace {

const QueueConfig* byName(const std::vector<QueueConfig>& qs, const std::string& name) {
  for (const auto& q : qs)
    if (q.name == name) return &q;
  return nullptr;
}

std::string strategyText(const std::optional<ShareStrategy>& s) {
  return s ? shareStrategyName(*s) : "default";
}

}  // namespace

QueueChanges diffQueues(const std::vector<QueueConfig>& before, const std::vector<QueueConfig>& after) {
  QueueChanges ch;
  for (const auto& q : before)
    if (!byName(after, q.name)) ch.removed.push_back(q.name);
  for (const auto& q : after) {
    const QueueConfig* old = byName(before, q.name);
    if (!old) ch.added.push_back(q.name);
    else if (!sameQueue(*old, q)) ch.changed.push_back(q.name);
  }
  return ch;
}

std::vector<std::string> filtersNotIn(const QueueConfig& a, const QueueConfig& b) {
  std::vector<std::string> out;
  for (const auto& f : a.filters)
    if (std::find(b.filters.begin(), b.filters.end(), f) == b.filters.end()) out.push_back(f);
  return out;
}

bool sameQueue(const QueueConfig& a, const QueueConfig& b) {
  return a.name == b.name && a.filters == b.filters && a.strategy == b.strategy &&
         a.max_messages == b.max_messages && a.max_bytes == b.max_bytes && a.message_ttl == b.message_ttl &&
         a.retention == b.retention && a.qos0_queue == b.qos0_queue;
}

std::string describeQueueChange(const QueueConfig& a, const QueueConfig& b) {
  std::string out;
  auto add = [&](const std::string& what) { out += (out.empty() ? "" : ", ") + what; };
  auto num = [&](const char* key, uint64_t x, uint64_t y) {
    if (x != y) add(std::string(key) + " " + std::to_string(x) + " -> " + std::to_string(y));
  };
  if (a.strategy != b.strategy) add("strategy " + strategyText(a.strategy) + " -> " + strategyText(b.strategy));
  num("max_messages", a.max_messages, b.max_messages);
  num("max_bytes", a.max_bytes, b.max_bytes);
  num("message_ttl", a.message_ttl, b.message_ttl);
  num("retention", a.retention, b.retention);
  if (a.qos0_queue != b.qos0_queue) add(std::string("qos0 ") + (b.qos0_queue ? "queue" : "drop"));
  for (const auto& f : filtersNotIn(b, a)) add("filter added " + f);
  for (const auto& f : filtersNotIn(a, b)) add("filter removed " + f);
  if (out.empty() && a.filters != b.filters) add("filters reordered");
  return out;
}

}  // namespace petrel
