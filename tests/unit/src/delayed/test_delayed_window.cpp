// DelayedWindow: the earliest pending delayed publishes in RAM, at most
// `capacity`, everything after boundary() on disk only; inserting before
// the boundary pushes the window's last back to disk; refills after it.
#include <gtest/gtest.h>

#include <limits>

#include "src/delayed/delayed_window.h"

namespace petrel {
namespace {

using Key = persistence::DelayedKey;

MessagePtr msg(const std::string& topic) {
  auto m = std::make_shared<Message>();
  m->topic = topic;
  return m;
}

std::vector<Key> ramKeys(const DelayedWindow& w) {
  std::vector<Key> out;
  for (const auto& e : w.ram()) out.push_back(e.first);
  return out;
}

TEST(DelayedWindow, KeysOrderByDueTimeThenId) {
  EXPECT_TRUE((Key{1, 9}) < (Key{2, 1}));
  EXPECT_TRUE((Key{2, 1}) < (Key{2, 3}));
  EXPECT_FALSE((Key{2, 3}) < (Key{2, 3}));
  EXPECT_EQ(persistence::delayedKey(Key{1, 9}).size(), 16u);
  EXPECT_LT(persistence::delayedKey(Key{1, 0xFFFFFFFF}), persistence::delayedKey(Key{2, 1}));  // bytewise too
  EXPECT_LT(persistence::delayedKey(Key{0xFF, 1}), persistence::delayedKey(Key{0x100, 1}));
  Key back;
  ASSERT_TRUE(persistence::readDelayedKey(persistence::delayedKey(Key{1'700'000'000'000, 42}), back));
  EXPECT_EQ(back, (Key{1'700'000'000'000, 42}));
}

TEST(DelayedWindow, TheFirstCapacityEntriesStayInRamTheRestOnDisk) {
  DelayedWindow w(3);
  for (uint64_t i = 1; i <= 5; ++i) EXPECT_EQ(w.insert({int64_t(i * 10), i}, msg("t")), i <= 3);
  EXPECT_EQ(w.inRam(), 3u);
  EXPECT_EQ(w.diskOnly(), 2u);
  EXPECT_EQ(w.pending(), 5u);
  EXPECT_EQ(w.boundary(), (Key{30, 3}));
  EXPECT_EQ(w.first(), (Key{10, 1}));
}

TEST(DelayedWindow, AnEarlierEntryPushesTheLastBackToDisk) {
  DelayedWindow w(3);
  for (uint64_t i = 1; i <= 4; ++i) w.insert({int64_t(i * 10), i}, msg("t"));  // 10 20 30 | 40
  EXPECT_TRUE(w.insert({15, 5}, msg("early")));
  EXPECT_EQ(ramKeys(w), (std::vector<Key>{{10, 1}, {15, 5}, {20, 2}}));
  EXPECT_EQ(w.boundary(), (Key{20, 2}));
  EXPECT_EQ(w.diskOnly(), 2u);  // 30 and 40
  // Later than the boundary: disk only, even with room after a pop.
  w.popFirst();
  EXPECT_FALSE(w.insert({25, 6}, msg("late")));
  EXPECT_EQ(w.diskOnly(), 3u);
  EXPECT_EQ(w.inRam(), 2u);
}

TEST(DelayedWindow, EntriesComeOutInKeyOrderWithTheirMessages) {
  DelayedWindow w(10);
  w.insert({30, 1}, msg("c"));
  w.insert({10, 2}, msg("a"));
  w.insert({20, 3}, msg("b"));
  w.insert({20, 4}, msg("b2"));
  std::string order;
  while (!w.empty()) order += w.popFirst().second->topic + " ";
  EXPECT_EQ(order, "a b b2 c ");
  EXPECT_EQ(w.pending(), 0u);
  EXPECT_FALSE(w.needsRefill());
}

TEST(DelayedWindow, DrainedItIsRefilledFromAfterTheBoundary) {
  DelayedWindow w(2);
  for (uint64_t i = 1; i <= 5; ++i) w.insert({int64_t(i), i}, msg("t"));
  w.popFirst();
  EXPECT_FALSE(w.needsRefill());
  w.popFirst();
  EXPECT_TRUE(w.needsRefill());
  EXPECT_EQ(w.boundary(), (Key{2, 2}));
  // The store returns the next ones (messages to be read when due).
  std::vector<DelayedWindow::Entry> next{{{3, 3}, nullptr}, {{4, 4}, nullptr}, {{5, 5}, nullptr}};
  w.refill(std::move(next), true);
  EXPECT_EQ(ramKeys(w), (std::vector<Key>{{3, 3}, {4, 4}}));
  EXPECT_EQ(w.diskOnly(), 1u);
  EXPECT_EQ(w.boundary(), (Key{4, 4}));
  EXPECT_EQ(w.first(), (Key{3, 3}));
}

TEST(DelayedWindow, ARefillThatReachesTheEndCorrectsTheCount) {
  DelayedWindow w(4);
  w.setDiskOnly(10);  // start-up: counted in the store
  ASSERT_TRUE(w.needsRefill());
  w.refill({{{1, 1}, nullptr}, {{2, 2}, nullptr}}, true);  // only two were there
  EXPECT_EQ(w.inRam(), 2u);
  EXPECT_EQ(w.diskOnly(), 0u);
  // Not the end: the count stands (less what was taken).
  DelayedWindow v(2);
  v.setDiskOnly(10);
  v.refill({{{1, 1}, nullptr}, {{2, 2}, nullptr}}, false);
  EXPECT_EQ(v.inRam(), 2u);
  EXPECT_EQ(v.diskOnly(), 8u);
}

TEST(DelayedWindow, AnEntryBeforeTheBoundaryGoesToRamEvenWhileWaitingForARefill) {
  // The wall clock stepped back: a new entry sorts before what has fired.
  DelayedWindow w(1);
  w.insert({10, 1}, msg("a"));
  w.insert({20, 2}, msg("b"));  // disk only
  w.popFirst();
  ASSERT_TRUE(w.needsRefill());
  EXPECT_TRUE(w.insert({5, 3}, msg("back")));
  EXPECT_FALSE(w.needsRefill());
  EXPECT_EQ(w.first(), (Key{5, 3}));
  EXPECT_EQ(w.diskOnly(), 1u);
}

TEST(DelayedWindow, AfterDrainingWithNothingOnDiskNewEntriesGoToRam) {
  DelayedWindow w(2);
  w.insert({10, 1}, msg("a"));
  w.popFirst();
  EXPECT_TRUE(w.insert({30, 2}, msg("b")));
  EXPECT_TRUE(w.insert({20, 3}, msg("c")));
  EXPECT_FALSE(w.insert({40, 4}, msg("d")));
  EXPECT_EQ(ramKeys(w), (std::vector<Key>{{20, 3}, {30, 2}}));
}

TEST(DelayedWindow, WithoutAStoreEverythingIsInRam) {
  DelayedWindow w(std::numeric_limits<size_t>::max());
  for (uint64_t i = 0; i < 5000; ++i) EXPECT_TRUE(w.insert({int64_t(5000 - i), i + 1}, msg("t")));
  EXPECT_EQ(w.inRam(), 5000u);
  EXPECT_EQ(w.diskOnly(), 0u);
  EXPECT_EQ(w.first(), (Key{1, 5000}));
}

}  // namespace
}  // namespace petrel
