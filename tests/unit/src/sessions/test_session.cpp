// Session: nextPacketId hands out ids in order, never 0, skipping ids still
// in flight, and wraps from 65535 to 1; PacketIdSet (the inbound QoS 2 ids)
// as a set; SubscriptionList as a sorted map from filter to options
// (set adds or replaces, erase, find, iteration in key order).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "src/sessions/session.h"

namespace petrel {
namespace {

InflightOut inflight(uint16_t id) { return InflightOut{id, Delivery{}, false}; }

TEST(SessionPacketId, StartsAtOneAndCounts) {
  Session s("c");
  EXPECT_EQ(s.clientId(), "c");
  EXPECT_EQ(s.nextPacketId(), 1);
  EXPECT_EQ(s.nextPacketId(), 2);
  EXPECT_EQ(s.nextPacketId(), 3);
}

TEST(SessionPacketId, SkipsIdsInFlight) {
  Session s("c");
  s.inflight.push_back(inflight(2));
  s.inflight.push_back(inflight(3));
  s.inflight.push_back(inflight(5));
  EXPECT_TRUE(s.packetIdInUse(3));
  EXPECT_FALSE(s.packetIdInUse(4));
  EXPECT_EQ(s.nextPacketId(), 1);
  EXPECT_EQ(s.nextPacketId(), 4);
  EXPECT_EQ(s.nextPacketId(), 6);
  // An acknowledged id is free again once the counter comes round.
  s.eraseInflight(3);
  EXPECT_FALSE(s.packetIdInUse(3));
  EXPECT_EQ(s.findInflight(3), nullptr);
  ASSERT_NE(s.findInflight(5), nullptr);
  EXPECT_EQ(s.findInflight(5)->packet_id, 5);
}

TEST(SessionPacketId, WrapsPastZero) {
  Session s("c");
  for (uint32_t i = 1; i <= 65535; ++i) ASSERT_EQ(s.nextPacketId(), i);
  EXPECT_EQ(s.nextPacketId(), 1);  // 0 is never used
  EXPECT_EQ(s.nextPacketId(), 2);

  // Wrapping with the ids after 65535 in flight skips them too.
  Session t("d");
  for (uint32_t i = 1; i <= 65534; ++i) t.nextPacketId();
  t.inflight.push_back(inflight(65535));
  t.inflight.push_back(inflight(1));
  t.inflight.push_back(inflight(2));
  EXPECT_EQ(t.nextPacketId(), 3);
}

TEST(SessionPacketId, FindsTheOnlyFreeIdOfANearlyFullWindow) {
  // 65,534 ids in flight (the indexed window): the one free id is found,
  // whichever way round the counter has to go.
  Session s("c");
  for (uint32_t id = 1; id <= 65535; ++id)
    if (id != 40000) s.inflight.push_back(inflight(static_cast<uint16_t>(id)));
  EXPECT_EQ(s.nextPacketId(), 40000);
  s.inflight.push_back(inflight(40000));
  s.eraseInflight(17);
  EXPECT_EQ(s.nextPacketId(), 17);
}

TEST(SessionPacketId, DistinctAcrossTheWrap) {
  // Ids handed out across the wrap while a window of them stays in flight
  // (acked in order) are distinct and non-zero.
  Session s("c");
  for (int i = 0; i < 63000; ++i) s.nextPacketId();
  std::vector<bool> seen(65536, false);
  for (int i = 0; i < 5000; ++i) {
    const uint16_t id = s.nextPacketId();
    ASSERT_NE(id, 0);
    ASSERT_FALSE(seen[id]) << id;
    seen[id] = true;
    s.inflight.push_back(inflight(id));
    if (s.inflight.size() > 100) s.inflight.pop_front();
  }
}

TEST(PacketIdSet, InsertCountErase) {
  PacketIdSet set;
  EXPECT_EQ(set.size(), 0u);
  EXPECT_EQ(set.count(1), 0u);
  set.insert(1);
  set.insert(65535);
  set.insert(1);  // already there
  EXPECT_EQ(set.size(), 2u);
  EXPECT_EQ(set.count(1), 1u);
  EXPECT_EQ(set.count(65535), 1u);
  EXPECT_EQ(set.count(2), 0u);
  EXPECT_EQ(set.erase(2), 0u);
  EXPECT_EQ(set.erase(1), 1u);
  EXPECT_EQ(set.erase(1), 0u);
  EXPECT_EQ(set.count(1), 0u);
  EXPECT_EQ(set.count(65535), 1u);
  EXPECT_EQ(set.erase(65535), 1u);
  EXPECT_EQ(set.size(), 0u);
  set.insert(7);  // usable after emptying
  EXPECT_EQ(set.count(7), 1u);
}

TEST(PacketIdSet, EraseFromTheMiddleKeepsTheRest) {
  PacketIdSet set;
  for (uint16_t id = 10; id < 20; ++id) set.insert(id);
  EXPECT_EQ(set.erase(12), 1u);
  EXPECT_EQ(set.erase(10), 1u);
  EXPECT_EQ(set.erase(19), 1u);
  EXPECT_EQ(set.size(), 7u);
  for (uint16_t id = 10; id < 20; ++id)
    EXPECT_EQ(set.count(id), (id == 10 || id == 12 || id == 19) ? 0u : 1u) << id;
}

std::vector<std::string> keys(const SubscriptionList& l) {
  std::vector<std::string> out;
  for (const auto& e : l) out.push_back(e.key);
  return out;
}

SubscriptionOptions qos(uint8_t q) {
  SubscriptionOptions o;
  o.qos = q;
  return o;
}

TEST(SubscriptionList, SetKeepsKeysSortedAndReplaces) {
  SubscriptionList l;
  EXPECT_EQ(l.size(), 0u);
  EXPECT_EQ(l.find("a"), nullptr);
  EXPECT_TRUE(l.set("m/n", qos(1)));
  EXPECT_TRUE(l.set("a/#", qos(0)));
  EXPECT_TRUE(l.set("$share/g/x", qos(2)));
  EXPECT_TRUE(l.set("z", qos(0)));
  EXPECT_TRUE(l.set("m", qos(0)));
  EXPECT_EQ(keys(l), (std::vector<std::string>{"$share/g/x", "a/#", "m", "m/n", "z"}));

  EXPECT_FALSE(l.set("m/n", qos(2)));  // replaced, not added
  EXPECT_EQ(l.size(), 5u);
  ASSERT_NE(l.find("m/n"), nullptr);
  EXPECT_EQ(l.find("m/n")->qos, 2);
  ASSERT_NE(l.find("$share/g/x"), nullptr);
  EXPECT_EQ(l.find("$share/g/x")->qos, 2);
  EXPECT_EQ(l.find("m/"), nullptr);  // neither a prefix...
  EXPECT_EQ(l.find("m/n/o"), nullptr);  // ...nor an extension matches
  EXPECT_EQ(l.find(""), nullptr);
}

TEST(SubscriptionList, Erase) {
  SubscriptionList l;
  for (const char* k : {"c", "a", "b", "d"}) l.set(k, qos(0));
  EXPECT_FALSE(l.erase("bb"));
  EXPECT_FALSE(l.erase("e"));
  EXPECT_TRUE(l.erase("b"));
  EXPECT_FALSE(l.erase("b"));
  EXPECT_EQ(keys(l), (std::vector<std::string>{"a", "c", "d"}));
  EXPECT_TRUE(l.erase("a"));
  EXPECT_TRUE(l.erase("d"));
  EXPECT_EQ(keys(l), (std::vector<std::string>{"c"}));
  EXPECT_TRUE(l.erase("c"));
  EXPECT_EQ(l.size(), 0u);
  EXPECT_EQ(l.begin(), l.end());
  EXPECT_TRUE(l.set("c", qos(1)));  // usable after emptying
  EXPECT_EQ(l.find("c")->qos, 1);
}

TEST(SubscriptionList, KeepsAllOptions) {
  SubscriptionList l;
  SubscriptionOptions o;
  o.qos = 1;
  o.no_local = true;
  o.retain_as_published = true;
  o.retain_handling = 2;
  o.subscription_id = 268435455;
  l.set("t", o);
  const SubscriptionOptions* got = l.find("t");
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->qos, 1);
  EXPECT_TRUE(got->no_local);
  EXPECT_TRUE(got->retain_as_published);
  EXPECT_EQ(got->retain_handling, 2);
  EXPECT_EQ(got->subscription_id, 268435455u);
}

TEST(SubscriptionList, ManyKeysInAnyOrder) {
  // Inserted in a scrambled order, iterated sorted; every key found.
  SubscriptionList l;
  std::vector<std::string> want;
  for (int i = 0; i < 200; ++i) {
    const int k = (i * 73) % 200;  // 73 is coprime with 200: a permutation
    EXPECT_TRUE(l.set("k/" + std::to_string(k), qos(static_cast<uint8_t>(k % 3))));
    want.push_back("k/" + std::to_string(i));
  }
  std::sort(want.begin(), want.end());
  EXPECT_EQ(keys(l), want);
  for (int k = 0; k < 200; ++k) {
    const SubscriptionOptions* o = l.find("k/" + std::to_string(k));
    ASSERT_NE(o, nullptr) << k;
    EXPECT_EQ(o->qos, k % 3);
  }
}

}  // namespace
}  // namespace petrel
