// parseDelayedTopic: `$delayed/<N>/<topic>` -- N as a delay in seconds below
// 42,949,670 and as a Unix time from it on, the limits (max_delay, the
// horizon), and what is refused as a bad N or target.
#include <gtest/gtest.h>

#include "src/delayed/delayed_topic.h"

namespace petrel {
namespace {

using mqtt::Reason;

constexpr int64_t kNow = 1'700'000'000'123;  // 2023-11-14, ms
constexpr uint64_t kMax = kDelayedHorizonS;

DelayedTopic parse(std::string_view t, uint64_t max_delay = kMax, size_t levels = 0) {
  return parseDelayedTopic(t, kNow, max_delay, levels);
}

TEST(DelayedTopic, ThePrefixIsExact) {
  EXPECT_TRUE(isDelayedTopic("$delayed/1/a"));
  EXPECT_TRUE(isDelayedTopic("$delayed/"));
  EXPECT_FALSE(isDelayedTopic("$delayed"));
  EXPECT_FALSE(isDelayedTopic("$delayedx/1/a"));
  EXPECT_FALSE(isDelayedTopic("$Delayed/1/a"));
  EXPECT_FALSE(isDelayedTopic("a/$delayed/1/a"));
}

TEST(DelayedTopic, ASmallNIsADelayInSeconds) {
  const DelayedTopic d = parse("$delayed/10/a/b/c");
  ASSERT_EQ(d.reason, Reason::Success);
  EXPECT_EQ(d.target, "a/b/c");
  EXPECT_EQ(d.due_ms, kNow + 10'000);
  EXPECT_EQ(parse("$delayed/0/t").due_ms, kNow);
  EXPECT_EQ(parse("$delayed/007/t").due_ms, kNow + 7'000);  // leading zeros
  EXPECT_EQ(parse("$delayed/42949669/t").due_ms, kNow + 42'949'669'000);
}

TEST(DelayedTopic, FromTheHorizonOnNIsAUnixTime) {
  // 42,949,670 s after the epoch is 1971: long past, due at once.
  EXPECT_EQ(parse("$delayed/42949670/t").due_ms, kNow);
  EXPECT_EQ(parse("$delayed/1600000000/t").due_ms, kNow);
  // Ahead: due on that second.
  const DelayedTopic d = parse("$delayed/1700000100/t");
  ASSERT_EQ(d.reason, Reason::Success);
  EXPECT_EQ(d.due_ms, 1'700'000'100'000);
  // The horizon is the furthest ahead a Unix time may be.
  const uint64_t last = (kNow + kMax * 1000) / 1000;
  EXPECT_EQ(parse("$delayed/" + std::to_string(last) + "/t").reason, Reason::Success);
  EXPECT_EQ(parse("$delayed/" + std::to_string(last + 1) + "/t").reason, Reason::QuotaExceeded);
}

TEST(DelayedTopic, BeyondMaxDelayIsQuotaExceeded) {
  EXPECT_EQ(parse("$delayed/60/t", 60).reason, Reason::Success);
  EXPECT_EQ(parse("$delayed/61/t", 60).reason, Reason::QuotaExceeded);
  EXPECT_EQ(parse("$delayed/1700000060/t", 60).reason, Reason::Success);  // 59.877 s ahead
  EXPECT_EQ(parse("$delayed/1700000061/t", 60).reason, Reason::QuotaExceeded);
  // Too large for any clock: too far ahead, not malformed.
  EXPECT_EQ(parse("$delayed/99999999999999999999999999/t").reason, Reason::QuotaExceeded);
  EXPECT_EQ(parse("$delayed/9223372036854775807/t").reason, Reason::QuotaExceeded);
}

TEST(DelayedTopic, NMustBeDecimalDigits) {
  for (const char* t : {"$delayed/abc/t", "$delayed/-1/t", "$delayed/+1/t", "$delayed/1.5/t", "$delayed/1e3/t",
                        "$delayed/ 1/t", "$delayed/1 /t", "$delayed/0x10/t", "$delayed//t", "$delayed/５/t"})
    EXPECT_EQ(parse(t).reason, Reason::TopicNameInvalid) << t;
}

TEST(DelayedTopic, TheTargetMustBeAValidTopicOfItsOwn) {
  for (const char* t : {"$delayed/5", "$delayed/5/", "$delayed/", "$delayed/5/$delayed/1/t",
                        "$delayed/5/$delayed/", "$delayed/5/a/+", "$delayed/5/#", "$delayed/5/a/#"})
    EXPECT_EQ(parse(t).reason, Reason::TopicNameInvalid) << t;
  // Empty levels and other $ topics are topics like any other.
  EXPECT_EQ(parse("$delayed/5//a/").target, "/a/");
  EXPECT_EQ(parse("$delayed/5/$delayed").target, "$delayed");
  EXPECT_EQ(parse("$delayed/5/$SYS/x").target, "$SYS/x");
  // The target's levels are bounded like any topic name's.
  EXPECT_EQ(parse("$delayed/5/a/b/c", kMax, 3).reason, Reason::Success);
  EXPECT_EQ(parse("$delayed/5/a/b/c/d", kMax, 3).reason, Reason::TopicNameInvalid);
}

}  // namespace
}  // namespace petrel
