// SubscriptionIds: none, one (in the word itself) or several (on the heap),
// copied, moved and assigned like the vector it replaces.
#include <gtest/gtest.h>

#include <utility>
#include <vector>

#include "src/sessions/subscription_ids.h"

namespace petrel {
namespace {

std::vector<uint32_t> ids(const SubscriptionIds& s) { return std::vector<uint32_t>(s.begin(), s.end()); }

TEST(SubscriptionIds, NoneOneAndSeveral) {
  SubscriptionIds s;
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(s.begin(), s.end());
  s.push_back(268435455);  // the largest identifier [MQTT-3.8.2-1]
  EXPECT_FALSE(s.empty());
  EXPECT_EQ(ids(s), std::vector<uint32_t>({268435455}));
  s.push_back(1);
  s.push_back(42);
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(ids(s), std::vector<uint32_t>({268435455, 1, 42}));
  EXPECT_EQ(s.toVector(), ids(s));
}

TEST(SubscriptionIds, CopiesAreIndependent) {
  for (const std::vector<uint32_t>& v : {std::vector<uint32_t>{}, {7}, {7, 8, 9}}) {
    SubscriptionIds a(v);
    SubscriptionIds b(a);
    EXPECT_EQ(ids(b), v);
    b.push_back(100);
    EXPECT_EQ(ids(a), v);  // a is unchanged
    SubscriptionIds c;
    c.push_back(5);
    c = a;
    EXPECT_EQ(ids(c), v);
    c = c;  // NOLINT: self-assignment keeps it
    EXPECT_EQ(ids(c), v);
  }
}

TEST(SubscriptionIds, MovesLeaveTheSourceEmpty) {
  for (const std::vector<uint32_t>& v : {std::vector<uint32_t>{3}, {3, 4}}) {
    SubscriptionIds a(v);
    SubscriptionIds b(std::move(a));
    EXPECT_EQ(ids(b), v);
    EXPECT_TRUE(a.empty());  // NOLINT: moved from, on purpose
    SubscriptionIds c;
    c.push_back(1);
    c.push_back(2);
    c = std::move(b);
    EXPECT_EQ(ids(c), v);
    EXPECT_TRUE(b.empty());  // NOLINT: moved from, on purpose
  }
}

TEST(SubscriptionIds, AssignedFromAVector) {
  SubscriptionIds s;
  s.push_back(9);
  s = std::vector<uint32_t>{1, 2};
  EXPECT_EQ(ids(s), std::vector<uint32_t>({1, 2}));
  s = std::vector<uint32_t>{};
  EXPECT_TRUE(s.empty());
}

}  // namespace
}  // namespace petrel
