// A reload of `queues:` (SIGHUP): which queues are added, removed and
// changed, which filters a changed queue loses, and the log's wording.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "src/queues/queue_reload.h"

namespace petrel {
namespace {

QueueConfig q(const std::string& name, std::vector<std::string> filters) {
  QueueConfig c;
  c.name = name;
  c.filters = std::move(filters);
  return c;
}

using Names = std::vector<std::string>;

TEST(QueueReload, NothingChanged) {
  const std::vector<QueueConfig> a{q("orders", {"orders/#"}), q("mail", {"signup/#"})};
  EXPECT_TRUE(diffQueues(a, a).empty());
  EXPECT_TRUE(diffQueues({}, {}).empty());
}

TEST(QueueReload, AddedRemovedChangedByName) {
  const std::vector<QueueConfig> before{q("orders", {"orders/#"}), q("mail", {"signup/#"}), q("old", {"o/#"})};
  QueueConfig orders = q("orders", {"orders/#"});
  orders.max_messages = 500;
  const std::vector<QueueConfig> after{q("sms", {"signup/#"}), q("mail", {"signup/#"}), orders, q("new", {"n/#"})};
  const QueueChanges ch = diffQueues(before, after);
  EXPECT_EQ(ch.added, (Names{"sms", "new"}));
  EXPECT_EQ(ch.removed, (Names{"old"}));
  EXPECT_EQ(ch.changed, (Names{"orders"}));
  EXPECT_FALSE(ch.empty());
}

TEST(QueueReload, EveryParameterCounts) {
  const QueueConfig base = q("x", {"x/#"});
  std::vector<QueueConfig> variants(8, base);
  variants[0].strategy = ShareStrategy::Sticky;
  variants[1].max_messages = 1;
  variants[2].max_bytes = 1;
  variants[3].message_ttl = 1;
  variants[4].retention = 1;
  variants[5].qos0_queue = false;
  variants[6].filters = {"x/#", "y/#"};
  variants[7].filters = {"y/#"};
  for (const auto& v : variants) {
    EXPECT_FALSE(sameQueue(base, v));
    EXPECT_EQ(diffQueues({base}, {v}).changed, (Names{"x"}));
  }
  EXPECT_TRUE(sameQueue(base, base));
}

TEST(QueueReload, FiltersNotIn) {
  const QueueConfig a = q("x", {"a/#", "b/#", "c/#"});
  const QueueConfig b = q("x", {"c/#", "d/#"});
  EXPECT_EQ(filtersNotIn(a, b), (Names{"a/#", "b/#"}));
  EXPECT_EQ(filtersNotIn(b, a), (Names{"d/#"}));
  EXPECT_TRUE(filtersNotIn(a, a).empty());
}

TEST(QueueReload, DescribesTheChange) {
  QueueConfig a = q("x", {"a/#", "b/#"});
  QueueConfig b = q("x", {"b/#", "c/#"});
  b.strategy = ShareStrategy::LeastInflight;
  b.max_messages = 200;
  a.max_messages = 100;
  b.retention = 60;
  b.qos0_queue = false;
  EXPECT_EQ(describeQueueChange(a, b),
            "strategy default -> least_inflight, max_messages 100 -> 200, retention 0 -> 60, qos0 drop, "
            "filter added c/#, filter removed a/#");
  const QueueConfig c = q("x", {"a/#", "b/#"});
  const QueueConfig r = q("x", {"b/#", "a/#"});
  EXPECT_EQ(describeQueueChange(c, r), "filters reordered");
}

}  // namespace
}  // namespace petrel
