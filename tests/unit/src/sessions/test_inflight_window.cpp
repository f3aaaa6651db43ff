// InflightWindow: packet id look-ups stay correct across the switch from a
// scanned window to the indexed one, with out-of-order removal and wrap.
#include <gtest/gtest.h>

#include "src/sessions/session.h"

namespace petrel {
namespace {

InflightOut entry(uint16_t id) { return InflightOut{id, Delivery{}, false}; }

TEST(InflightWindow, SmallWindowFindsAndErases) {
  InflightWindow w;
  for (uint16_t id = 1; id <= 10; ++id) w.push_back(entry(id));
  EXPECT_TRUE(w.contains(5));
  EXPECT_FALSE(w.contains(11));
  ASSERT_NE(w.find(7), nullptr);
  EXPECT_EQ(w.find(7)->packet_id, 7);
  EXPECT_TRUE(w.erase(7));
  EXPECT_FALSE(w.erase(7));
  EXPECT_FALSE(w.contains(7));
  EXPECT_EQ(w.size(), 9u);
  w.pop_front();
  EXPECT_FALSE(w.contains(1));
  EXPECT_EQ(w.front().packet_id, 2);
}

TEST(InflightWindow, FullWidthWindowStaysConsistent) {
  // The whole packet id space in flight, as a client with Receive Maximum
  // 65,535 allows: every id is found, a removed one is free again.
  InflightWindow w;
  for (uint32_t id = 1; id <= 65535; ++id) w.push_back(entry(static_cast<uint16_t>(id)));
  EXPECT_EQ(w.size(), 65535u);
  for (uint32_t id = 1; id <= 65535; id += 997) EXPECT_TRUE(w.contains(static_cast<uint16_t>(id)));
  EXPECT_FALSE(w.contains(0));
  // Out of order: remove every third id near the back.
  for (uint32_t id = 65535; id > 60000; id -= 3) EXPECT_TRUE(w.erase(static_cast<uint16_t>(id)));
  for (uint32_t id = 65535; id > 60000; id -= 3) EXPECT_FALSE(w.contains(static_cast<uint16_t>(id)));
  EXPECT_TRUE(w.contains(65534));
  // Drain from the front: the index follows, and goes when the window empties.
  size_t n = w.size();
  while (!w.empty()) {
    const uint16_t id = w.front().packet_id;
    w.pop_front();
    EXPECT_FALSE(w.contains(id));
    --n;
  }
  EXPECT_EQ(n, 0u);
  w.push_back(entry(42));
  EXPECT_TRUE(w.contains(42));
  EXPECT_FALSE(w.contains(43));
}

TEST(InflightWindow, EraseByIteratorAndClear) {
  InflightWindow w;
  for (uint16_t id = 100; id < 300; ++id) w.push_back(entry(id));
  for (auto it = w.begin(); it != w.end();) it = (it->packet_id % 2) ? w.erase(it) : std::next(it);
  EXPECT_EQ(w.size(), 100u);
  EXPECT_FALSE(w.contains(101));
  EXPECT_TRUE(w.contains(102));
  w.clear();
  EXPECT_TRUE(w.empty());
  EXPECT_FALSE(w.contains(102));
}

TEST(SessionPacketIds, NextIdSkipsIdsInFlight) {
  Session s("c");
  for (int i = 0; i < 200; ++i) s.inflight.push_back(entry(s.nextPacketId()));
  EXPECT_EQ(s.inflight.back().packet_id, 200);
  // Ids 1..200 are taken; after a wrap the next free id follows them.
  for (int i = 0; i < 65535 - 200; ++i) (void)s.nextPacketId();
  EXPECT_EQ(s.nextPacketId(), 201);
}

}  // namespace
}  // namespace petrel
