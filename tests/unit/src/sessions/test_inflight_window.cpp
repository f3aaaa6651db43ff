// InflightWindow: packet id look-ups stay correct across the switch from a
// scanned window to the indexed one, with out-of-order removal and wrap.
#include <gtest/gtest.h>

#include <vector>

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

TEST(InflightWindow, EntriesWaitingToBeSentAgainAreCountedHoweverTheyLeave) {
  // A window of 200 resumed under a Receive Maximum of 50: the last 150
  // wait (Sessions::resume). Each way out of the window keeps the count.
  InflightWindow w;
  for (uint16_t id = 1; id <= 200; ++id) w.push_back(entry(id));
  for (auto it = w.begin() + 50; it != w.end(); ++it) w.markUnsent(*it);
  EXPECT_EQ(w.unsent(), 150u);
  EXPECT_EQ(w.onWire(), 50u);
  EXPECT_EQ(w.firstUnsent()->packet_id, 51);
  w.markUnsent(*w.firstUnsent());  // already waiting: counted once
  EXPECT_EQ(w.unsent(), 150u);
  // Sent in turn: the next one waiting follows.
  w.markSent(*w.firstUnsent());
  EXPECT_EQ(w.unsent(), 149u);
  EXPECT_EQ(w.firstUnsent()->packet_id, 52);
  w.markSent(w.front());  // one on the wire: nothing to take back
  EXPECT_EQ(w.unsent(), 149u);
  // Completed while waiting (the client acknowledged it from before).
  EXPECT_TRUE(w.erase(100));
  EXPECT_EQ(w.unsent(), 148u);
  // Through the index (past kIndexFrom entries) and by iterator.
  for (auto it = w.begin(); it != w.end();) it = it->packet_id > 190 ? w.erase(it) : std::next(it);
  EXPECT_EQ(w.unsent(), 138u);
  EXPECT_EQ(w.firstUnsent()->packet_id, 52);
  // The ones on the wire leave from the front; the waiting ones stay last.
  while (w.onWire() > 0) w.pop_front();
  EXPECT_EQ(w.size(), 138u);
  EXPECT_EQ(w.firstUnsent(), w.begin());
  w.pop_front();
  EXPECT_EQ(w.unsent(), 137u);
  w.clear();
  EXPECT_EQ(w.unsent(), 0u);
  EXPECT_EQ(w.onWire(), 0u);
}

TEST(InflightWindow, IdsInSequenceAcrossTheWrapAreFoundOrFree) {
  // Ids handed out one after another through 65535 -> 1, a few acked out
  // of order: those in flight are found, the next ones and the acked ones
  // are free (the window answers without a scan when it can).
  InflightWindow w;
  uint16_t id = 65530;
  for (int i = 0; i < 20; ++i) {
    w.push_back(entry(id));
    id = id == 65535 ? 1 : static_cast<uint16_t>(id + 1);
  }  // 65530..65535, 1..14
  EXPECT_TRUE(w.contains(65530));
  EXPECT_TRUE(w.contains(65535));
  EXPECT_TRUE(w.contains(1));
  EXPECT_TRUE(w.contains(14));
  EXPECT_FALSE(w.contains(15));
  EXPECT_FALSE(w.contains(65529));
  EXPECT_FALSE(w.contains(30000));
  EXPECT_TRUE(w.erase(3));
  EXPECT_FALSE(w.contains(3));
  w.pop_front();
  EXPECT_FALSE(w.contains(65530));
  EXPECT_TRUE(w.contains(65531));
  w.push_back(entry(15));
  EXPECT_TRUE(w.contains(15));
  EXPECT_FALSE(w.contains(16));
}

TEST(InflightWindow, IdsOutOfSequenceAreStillFound) {
  // Entries read back from the store carry the ids they had: any order.
  InflightWindow w;
  for (uint16_t id : {500, 7, 65535, 42}) w.push_back(entry(id));
  for (uint16_t id : {500, 7, 65535, 42}) EXPECT_TRUE(w.contains(id));
  EXPECT_FALSE(w.contains(43));
  EXPECT_FALSE(w.contains(8));
  EXPECT_FALSE(w.contains(1));
  // Emptied, the window starts a new sequence.
  while (!w.empty()) w.pop_front();
  w.push_back(entry(9));
  w.push_back(entry(10));
  EXPECT_TRUE(w.contains(9));
  EXPECT_FALSE(w.contains(500));
  EXPECT_FALSE(w.contains(11));
}

TEST(SessionPacketIds, NextIdAfterIdsReadBackSkipsThem) {
  // A session whose window was read back from the store (ids 1, 2 and 5
  // in flight) hands out 3, 4, then 6: never an id in use.
  Session s("restored");
  for (uint16_t id : {1, 2, 5}) s.inflight.push_back(entry(id));
  std::vector<uint16_t> got;
  for (int i = 0; i < 3; ++i) {
    got.push_back(s.nextPacketId());
    s.inflight.push_back(entry(got.back()));
  }
  EXPECT_EQ(got, (std::vector<uint16_t>{3, 4, 6}));
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
