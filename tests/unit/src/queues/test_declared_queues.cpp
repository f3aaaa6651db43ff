// Declared queues (`queues:`): the configuration section, the `$queue/<name>`
// form, the retention / message_ttl decision, the queue record's times and
// the one-copy-per-queue rule of routing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "persistence/records.h"
#include "src/config/config.h"
#include "tests/unit/src/config/config_text.h"
#include "src/queues/queue_policy.h"
#include "src/queues/shared_groups.h"

namespace petrel {
namespace {

class QueueConfigFile : public ConfigTextTest {};

TEST_F(QueueConfigFile, NoneByDefault) {
  ASSERT_TRUE(load("log_level: info\n")) << error_;
  EXPECT_TRUE(cfg_.queues.empty());
  ASSERT_TRUE(load("queues:\n")) << error_;
  EXPECT_TRUE(cfg_.queues.empty());
}

TEST_F(QueueConfigFile, EveryKey) {
  ASSERT_TRUE(load("queues:\n"
                   "  - name: orders\n"
                   "    filters: ['orders/#', 'legacy/orders/+']\n"
                   "    strategy: least_inflight\n"
                   "    max_messages: 500000\n"
                   "    max_bytes: 1048576\n"
                   "    message_ttl: 3600\n"
                   "    retention: 86400\n"
                   "    qos0: drop\n"
                   "  - name: mail\n"
                   "    filter: signup/#\n"))
      << error_;
  ASSERT_EQ(cfg_.queues.size(), 2u);
  const QueueConfig& o = cfg_.queues[0];
  EXPECT_EQ(o.name, "orders");
  ASSERT_EQ(o.filters.size(), 2u);
  EXPECT_EQ(o.filters[1], "legacy/orders/+");
  ASSERT_TRUE(o.strategy.has_value());
  EXPECT_EQ(*o.strategy, ShareStrategy::LeastInflight);
  EXPECT_EQ(o.max_messages, 500000u);
  EXPECT_EQ(o.max_bytes, 1048576u);
  EXPECT_EQ(o.message_ttl, 3600u);
  EXPECT_EQ(o.retention, 86400u);
  EXPECT_FALSE(o.qos0_queue);
  const QueueConfig& m = cfg_.queues[1];
  EXPECT_EQ(m.filters, std::vector<std::string>{"signup/#"});
  EXPECT_FALSE(m.strategy.has_value());
  EXPECT_EQ(m.max_messages, 0u);
  EXPECT_EQ(m.retention, 0u);
  EXPECT_TRUE(m.qos0_queue);  // the default: queued
}

TEST_F(QueueConfigFile, StrictErrorsNameKeyAndLine) {
  expectError("queues: {name: x}\n", "queues: expected a list", 1);
  expectError("queues:\n  - filter: a/#\n", "queues[0].name: required", 2);
  expectError("queues:\n  - name: a\n", "queues[0].filters: at least one", 2);
  expectError("queues:\n  - name: a/b\n    filter: x\n", "queues[0].name", 2);
  expectError("queues:\n  - name: a\n    filter: x\n  - name: a\n    filter: y\n", "a second queue named 'a'", 4);
  expectError("queues:\n  - name: a\n    filter: x/#/y\n", "queues[0].filter", 3);
  expectError("queues:\n  - name: a\n    filter: $share/g/x\n", "queues[0].filter", 3);
  expectError("queues:\n  - name: a\n    filters: [x, x]\n", "listed twice", 3);
  expectError("queues:\n  - name: a\n    filter: x\n    retention: -1\n", "queues[0].retention", 4);
  expectError("queues:\n  - name: a\n    filter: x\n    qos0: keep\n", "queues[0].qos0", 4);
  expectError("queues:\n  - name: a\n    filter: x\n    strategy: fastest\n", "queues[0].strategy", 4);
  expectError("queues:\n  - name: a\n    filter: x\n    max_mesages: 3\n", "queues[0].max_mesages: unknown key", 4);
}

TEST(QueueFilter, Parse) {
  std::string_view name;
  EXPECT_TRUE(parseQueueFilter("$queue/orders", name));
  EXPECT_EQ(name, "orders");
  EXPECT_TRUE(isQueueFilter("$queue/"));
  EXPECT_FALSE(parseQueueFilter("$queue/", name));
  EXPECT_FALSE(parseQueueFilter("$queue/a/b", name));
  EXPECT_FALSE(parseQueueFilter("$queue/+", name));
  EXPECT_FALSE(parseQueueFilter("$queue/#", name));
  EXPECT_FALSE(isQueueFilter("$share/g/orders"));
  EXPECT_FALSE(isQueueFilter("queue/orders"));
  EXPECT_FALSE(parseQueueFilter("$queues/orders", name));
}

TEST(QueueDeadline, RetentionAndTtl) {
  const int64_t t = 1'700'000'000'000;
  EXPECT_EQ(queueEntryDeadline(t, 0, 0, 0), 0);              // kept until consumed
  EXPECT_EQ(queueEntryDeadline(t, 0, 0, 60), t + 60'000);    // retention
  EXPECT_EQ(queueEntryDeadline(t, 0, 30, 0), t + 30'000);    // ttl for a message without expiry
  EXPECT_EQ(queueEntryDeadline(t, t + 5000, 30, 0), 0);      // its own expiry rules
  EXPECT_EQ(queueEntryDeadline(t, 0, 30, 60), t + 30'000);   // the earlier of the two
  EXPECT_EQ(queueEntryDeadline(t, 0, 90, 60), t + 60'000);
  EXPECT_EQ(queueEntryDeadline(t, t + 5000, 90, 60), t + 60'000);
}

TEST(QueueDeadline, Expired) {
  EXPECT_FALSE(queueEntryExpired(0, 0, 1000));
  EXPECT_FALSE(queueEntryExpired(2000, 0, 1999));
  EXPECT_TRUE(queueEntryExpired(2000, 0, 2000));
  EXPECT_TRUE(queueEntryExpired(0, 1500, 1500));
  EXPECT_TRUE(queueEntryExpired(9000, 1500, 2000));  // the message's own expiry first
}

TEST(QueueRecordTimes, RoundTripAndOldRecords) {
  using namespace persistence;
  QueueRecord q;
  q.msg_id = 7;
  q.qos = 1;
  q.bytes = 3;
  q.queued_at_ms = 1'700'000'000'123;
  q.deadline_ms = 1'700'000'060'123;
  QueueRecord back;
  ASSERT_TRUE(decodeQueue(5, encodeQueue(q), back));
  EXPECT_EQ(back.queued_at_ms, q.queued_at_ms);
  EXPECT_EQ(back.deadline_ms, q.deadline_ms);
  EXPECT_TRUE(back.group.empty());
  // With a group (an entry in flight to a member) too.
  q.group = "\x01share/orders/orders/#";
  ASSERT_TRUE(decodeQueue(5, encodeQueue(q), back));
  EXPECT_EQ(back.group, q.group);
  EXPECT_EQ(back.deadline_ms, q.deadline_ms);
  // Records without times are written (and read) as before.
  QueueRecord plain;
  plain.msg_id = 9;
  plain.qos = 2;
  QueueRecord old;
  old.queued_at_ms = 1;
  const std::string enc = encodeQueue(plain);
  ASSERT_TRUE(decodeQueue(1, enc, old));
  EXPECT_EQ(old.queued_at_ms, 0);
  EXPECT_EQ(old.deadline_ms, 0);
  EXPECT_EQ(enc.size(), 8u + 1 + 1 + 2 + 4 + 1);
}

TEST(OncePerQueue, TheFirstListedFilterKeepsIt) {
  DeclaredQueue q, other;
  SharedGroup a, b, c, plain;
  a.declared = &q;
  a.filter_index = 1;
  b.declared = &q;
  b.filter_index = 0;
  c.declared = &other;
  std::vector<SharedGroup*> gs{&a, &plain, &c, &b};
  SharedGroups::oncePerQueue(gs);
  ASSERT_EQ(gs.size(), 3u);
  EXPECT_EQ(gs[0], &b);
  EXPECT_EQ(gs[1], &plain);
  EXPECT_EQ(gs[2], &c);
  // An undeclared group is never merged with another.
  SharedGroup x, y;
  std::vector<SharedGroup*> two{&x, &y};
  SharedGroups::oncePerQueue(two);
  EXPECT_EQ(two.size(), 2u);
}

}  // namespace
}  // namespace petrel
