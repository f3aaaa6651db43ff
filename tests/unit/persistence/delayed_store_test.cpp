// The store's delayed table (persistence/): records put and deleted in
// batches, read back in due order in ranges, counted without a walk; their
// message ids are never handed out again; and a store written before the
// table existed opens, read-only (no table: nothing delayed) and read-write
// (the table is added).
#include <gtest/gtest.h>
#include <lmdb.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "persistence/store.h"
#include "tests/unit/temp_dir.h"

namespace petrel::persistence {
namespace {

StoreOptions options(const std::string& dir, bool read_only = false) {
  StoreOptions o;
  o.dir = dir;
  o.map_size = 64ull << 20;
  o.read_only = read_only;
  return o;
}

std::unique_ptr<Store> open(const StoreOptions& o) {
  std::string err;
  auto s = Store::open(o, err);
  EXPECT_NE(s, nullptr) << err;
  return s;
}

MessageRecord message(const std::string& topic, const std::string& payload) {
  MessageRecord m;
  m.topic = topic;
  m.payload = payload;
  m.origin = "pub";
  m.qos = 2;
  m.retain = true;
  m.expires_at_ms = 1'800'000'000'000;
  return m;
}

std::vector<DelayedKey> keys(const Store& s, DelayedKey after = {}, size_t limit = 100) {
  std::vector<DelayedKey> out;
  s.readDelayed(after, limit, [&](const DelayedKey& k) { out.push_back(k); });
  return out;
}

TEST(DelayedStore, PutReadInDueOrderDeleteAndReopen) {
  TempDir t;
  {
    auto s = open(options(t.path()));
    ASSERT_TRUE(s);
    Batch& b = s->batch();
    b.putDelayed({2'000, 7}, message("b", "second"));
    b.putDelayed({1'000, 9}, message("a", "first"));
    b.putDelayed({2'000, 3}, message("b2", "tie, lower id first"));
    b.putDelayed({0x1'0000'0000, 4}, message("c", "later"));  // byte order, not string order
    s->drain();
    EXPECT_EQ(s->delayedCount(), 4u);
    EXPECT_EQ(s->stats().delayed, 4u);
    const std::vector<DelayedKey> all{{1'000, 9}, {2'000, 3}, {2'000, 7}, {0x1'0000'0000, 4}};
    EXPECT_EQ(keys(*s), all);
    EXPECT_EQ(keys(*s, {2'000, 3}), (std::vector<DelayedKey>{{2'000, 7}, {0x1'0000'0000, 4}}));
    EXPECT_EQ(keys(*s, {1'500, 0}, 2), (std::vector<DelayedKey>{{2'000, 3}, {2'000, 7}}));
    MessageRecord m;
    ASSERT_TRUE(s->readDelayedMessage({2'000, 3}, m));
    EXPECT_EQ(m.topic, "b2");
    EXPECT_EQ(m.payload, "tie, lower id first");
    EXPECT_EQ(m.qos, 2);
    EXPECT_TRUE(m.retain);
    EXPECT_EQ(m.expires_at_ms, 1'800'000'000'000);
    EXPECT_FALSE(s->readDelayedMessage({2'000, 4}, m));
    // Not message records: the message table and its walk do not see them.
    EXPECT_EQ(s->stats().messages, 0u);
    // Their ids are not handed out again.
    EXPECT_EQ(s->maxMessageId(), 9u);
    s->batch().deleteDelayed({1'000, 9});
    s->batch().deleteDelayed({5, 5});  // not there: no error
    s->drain();
    EXPECT_EQ(s->delayedCount(), 3u);
  }
  auto s = open(options(t.path(), true));
  ASSERT_TRUE(s);
  EXPECT_EQ(keys(*s), (std::vector<DelayedKey>{{2'000, 3}, {2'000, 7}, {0x1'0000'0000, 4}}));
  EXPECT_EQ(s->maxMessageId(), 9u);
}

TEST(DelayedStore, PutAndDeleteInOneCommitLeaveNothing) {
  TempDir t;
  auto s = open(options(t.path()));
  ASSERT_TRUE(s);
  s->batch().putDelayed({10, 1}, message("x", "y"));
  s->submit();
  s->batch().deleteDelayed({10, 1});
  s->drain();
  EXPECT_EQ(s->delayedCount(), 0u);
  EXPECT_TRUE(keys(*s).empty());
}

// A store as Petrel wrote it before the delayed table existed: the same
// schema version, every other table.
void writeOldStore(const std::string& dir) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  mdb_env_set_mapsize(env, 64ull << 20);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0640), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  for (const char* name : {"meta", "sessions", "subscriptions", "queue", "inbound_qos2", "messages", "refs",
                           "retained"}) {
    MDB_dbi dbi;
    ASSERT_EQ(mdb_dbi_open(txn, name, MDB_CREATE, &dbi), 0);
    if (std::string(name) == "meta") {
      uint32_t ver = Store::kSchemaVersion;
      MDB_val k{6, const_cast<char*>("schema")}, v{4, &ver};
      ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
    }
  }
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

TEST(DelayedStore, AStoreWithoutTheTableOpens) {
  TempDir t;
  writeOldStore(t.path());
  {
    auto s = open(options(t.path(), true));  // petrel inspect
    ASSERT_TRUE(s);
    EXPECT_EQ(s->delayedCount(), 0u);
    EXPECT_EQ(s->stats().delayed, 0u);
    EXPECT_TRUE(keys(*s).empty());
    MessageRecord m;
    EXPECT_FALSE(s->readDelayedMessage({1, 1}, m));
  }
  {
    auto s = open(options(t.path()));  // the broker: the table is added
    ASSERT_TRUE(s);
    EXPECT_EQ(s->delayedCount(), 0u);
    s->batch().putDelayed({10, 1}, message("x", "y"));
    s->drain();
  }
  auto s = open(options(t.path(), true));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->delayedCount(), 1u);
}

}  // namespace
}  // namespace petrel::persistence
