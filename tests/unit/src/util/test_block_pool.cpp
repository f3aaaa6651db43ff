#include "src/util/block_pool.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "src/routing/message.h"

namespace petrel {
namespace {

TEST(BlockPool, AFreedBlockIsHandedOutAgain) {
  using List = BlockFreeList<48>;
  void* a = List::take();
  List::give(a);
  void* b = List::take();
  EXPECT_EQ(a, b);
  List::give(b);
}

TEST(BlockPool, BlocksInUseAreDistinct) {
  using List = BlockFreeList<64>;
  std::set<void*> seen;
  std::vector<void*> held;
  for (int i = 0; i < 1000; ++i) {
    void* p = List::take();
    EXPECT_TRUE(seen.insert(p).second);
    held.push_back(p);
  }
  for (void* p : held) List::give(p);
}

TEST(BlockPool, KeepsAtMostItsLimitPerThread) {
  // More blocks than the limit given back at once: the surplus goes to
  // malloc (checked under the sanitizer build: no leak, no double free).
  using List = BlockFreeList<80>;
  std::vector<void*> held;
  for (size_t i = 0; i < List::kKeep + 100; ++i) held.push_back(List::take());
  for (void* p : held) List::give(p);
  held.clear();
  for (size_t i = 0; i < List::kKeep + 100; ++i) held.push_back(List::take());
  for (void* p : held) List::give(p);
}

TEST(BlockPool, DroppedMessagesAreHandedOutAgainEmpty) {
  std::vector<std::shared_ptr<Message>> live;
  for (int i = 0; i < 100; ++i) {
    auto m = makeMessage();
    m->topic = "t/" + std::to_string(i);
    m->payload.assign(static_cast<size_t>(100 + i), 'x');
    m->origin = "client-with-a-long-identifier";
    m->props = std::make_shared<const mqtt::Properties>();
    m->expires_at_ms = 12345;
    m->from_bridge = true;
    m->retain = true;
    m->qos = 2;
    m->from_cluster = true;
    m->durable_only = true;
    m->adopted_from = 7;
    m->cluster_node = 8;
    m->cluster_seq = 9;
    m->group_token = 10;
    m->id = static_cast<uint64_t>(i + 1);
    live.push_back(std::move(m));
  }
  const Message* first = live.front().get();
  live.front().reset();  // dropped: kept for the next one
  auto again = makeMessage();
  EXPECT_EQ(again.get(), first);
  EXPECT_TRUE(again->topic.empty());
  EXPECT_TRUE(again->payload.empty());
  EXPECT_GE(again->payload.capacity(), 100u);  // its buffer stays for the next parse
  EXPECT_TRUE(again->origin.empty());
  EXPECT_GE(again->origin.capacity(), 29u);  // so does the publisher id's
  EXPECT_FALSE(again->props);
  EXPECT_EQ(again->expires_at_ms, 0);
  EXPECT_FALSE(again->from_bridge);
  EXPECT_FALSE(again->retain);
  EXPECT_EQ(again->qos, 0);
  EXPECT_FALSE(again->from_cluster);
  EXPECT_FALSE(again->durable_only);
  EXPECT_EQ(again->adopted_from, 0u);
  EXPECT_EQ(again->cluster_node, 0u);
  EXPECT_EQ(again->cluster_seq, 0u);
  EXPECT_EQ(again->group_token, 0u);
  EXPECT_EQ(again->id, 0u);
#if defined(__x86_64__) && defined(__GLIBCXX__)
  // Message::resetKeepingBuffers names every field, and so does this test:
  // a field added to Message changes its size, and this stops the build
  // until both have it.
  static_assert(sizeof(Message) == 168, "a field was added to Message: reset it in resetKeepingBuffers and check it here");
#endif
  for (size_t i = 1; i < live.size(); ++i) {
    EXPECT_EQ(live[i]->topic, "t/" + std::to_string(i));
    EXPECT_EQ(live[i]->payload.size(), 100 + i);
    EXPECT_EQ(live[i]->id, i + 1);
  }
}

TEST(BlockPool, AWeakReferenceToARecycledMessageHasExpired) {
  // The store's message cache holds weak references: one must never lead
  // to a message handed out again for something else.
  auto m = makeMessage();
  m->payload = "first";
  const Message* where = m.get();
  std::weak_ptr<const Message> w = m;
  m.reset();
  auto other = makeMessage();
  other->payload = "second";
  EXPECT_EQ(other.get(), where);  // the same object, recycled
  EXPECT_TRUE(w.expired());
  EXPECT_EQ(w.lock(), nullptr);
}

TEST(BlockPool, LargeStringBuffersAreNotKept) {
  auto m = makeMessage();
  m->payload.assign(MessageRecycler::kKeepPayload * 4, 'y');
  m->topic.assign(MessageRecycler::kKeepPayload * 2, 't');
  m->origin.assign(MessageRecycler::kKeepPayload * 2, 'o');
  m.reset();
  auto again = makeMessage();
  EXPECT_LE(again->payload.capacity(), MessageRecycler::kKeepPayload);
  EXPECT_LE(again->topic.capacity(), MessageRecycler::kKeepPayload);
  EXPECT_LE(again->origin.capacity(), MessageRecycler::kKeepPayload);
}

TEST(BlockPool, MessagesBeyondTheLimitGoBackToMalloc) {
  // Dropped at once, more than are kept: the rest are deleted (the
  // sanitizer build checks there is no leak or double free).
  std::vector<std::shared_ptr<Message>> many;
  for (size_t i = 0; i < MessageRecycler::kKeep * 2; ++i) many.push_back(makeMessage());
  many.clear();
  for (size_t i = 0; i < MessageRecycler::kKeep * 2; ++i) many.push_back(makeMessage());
  many.clear();
}

TEST(BlockPool, AMessageFreedOnAnotherThreadIsSafe) {
  auto m = makeMessage();
  m->payload = "from the loop";
  std::thread t([m = std::move(m)]() mutable { m.reset(); });
  t.join();
  auto n = makeMessage();
  EXPECT_TRUE(n->payload.empty());
}

}  // namespace
}  // namespace petrel
