// Durable's cache of messages read back from the store, on a real LMDB
// store in a scratch directory: a message read back by several holders is
// one object, and its entry goes as soon as its last holder is done with
// it (Durable::released), not at the next trim, so that a draining queue
// does not keep a block per message it has read.
#include <gtest/gtest.h>
#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "persistence/store.h"
#include "src/durable/durable.h"
#include "tests/unit/temp_dir.h"

namespace petrel {
namespace {

class MessageCache : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    durable_ = std::make_unique<Durable>(&loop_);
    persistence::StoreOptions o;
    o.dir = dir_.path();
    o.map_size = 64ull << 20;
    std::string err;
    auto store = persistence::Store::open(o, err);
    ASSERT_TRUE(store) << err;
    durable_->attach(std::move(store), [](bool) {});
    for (int i = 0; i < 3; ++i) {
      Message m;
      m.id = durable_->newMessageId();
      m.topic = "t/" + std::to_string(i);
      m.payload = "payload " + std::to_string(i);
      m.qos = 1;
      durable_->putMessage(m, 1);
      ids_.push_back(m.id);
    }
    durable_->drain();
  }
  void TearDown() override {
    durable_->finish();
    uv_run(&loop_, UV_RUN_DEFAULT);
    durable_.reset();
    uv_loop_close(&loop_);
  }

  TempDir dir_{"petrel-message-cache"};
  uv_loop_t loop_;
  std::unique_ptr<Durable> durable_;
  std::vector<uint64_t> ids_;
};

TEST_F(MessageCache, AMessageReadBackTwiceWhileHeldIsOneObject) {
  std::vector<MessagePtr> first = durable_->loadMessages(ids_);
  ASSERT_EQ(first.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(first[i]);
    EXPECT_EQ(first[i]->topic, "t/" + std::to_string(i));
    EXPECT_EQ(first[i]->payload, "payload " + std::to_string(i));
  }
  EXPECT_EQ(durable_->cachedMessages(), 3u);
  std::vector<MessagePtr> again = durable_->loadMessages({ids_[1]});
  EXPECT_EQ(again[0].get(), first[1].get());
}

TEST_F(MessageCache, TheLastHolderDoneDropsTheEntryAtOnce) {
  std::vector<MessagePtr> a = durable_->loadMessages(ids_);
  std::vector<MessagePtr> b = durable_->loadMessages({ids_[0]});
  // Two holders of message 0: the first one done leaves the entry.
  durable_->released(a[0]);
  EXPECT_EQ(durable_->cachedMessages(), 3u);
  a[0].reset();
  // The last one done drops it, before the message itself goes.
  durable_->released(b[0]);
  EXPECT_EQ(durable_->cachedMessages(), 2u);
  b[0].reset();
  // Read back again: a new object, cached again.
  std::vector<MessagePtr> c = durable_->loadMessages({ids_[0]});
  ASSERT_TRUE(c[0]);
  EXPECT_EQ(c[0]->topic, "t/0");
  EXPECT_EQ(durable_->cachedMessages(), 3u);
}

TEST_F(MessageCache, AnotherObjectWithTheSameIdLeavesTheEntry) {
  std::vector<MessagePtr> a = durable_->loadMessages(ids_);
  // The routed original of a message, or a copy made elsewhere, has the
  // same id but is not what the cache refers to.
  auto other = std::make_shared<Message>(*a[2]);
  durable_->released(other);
  EXPECT_EQ(durable_->cachedMessages(), 3u);
  // Nor does a message that was never read back.
  auto routed = std::make_shared<Message>();
  routed->id = ids_.back() + 100;
  durable_->released(routed);
  durable_->released(nullptr);
  EXPECT_EQ(durable_->cachedMessages(), 3u);
  EXPECT_EQ(durable_->loadMessages({ids_[2]})[0].get(), a[2].get());
}

}  // namespace
}  // namespace petrel
