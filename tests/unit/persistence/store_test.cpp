// Unit tests for persistence/: the record encodings (records.h) and the LMDB
// Store (store.h) against a scratch directory: creating and reopening a
// store, batches and their commit, reading every table back, message
// reference counting, session deletion, queue ranges, and refusing damaged
// or foreign stores.
//
// The tests that need a store written by "another" Petrel (a different
// schema version) or by another program write it with LMDB directly.
#include "persistence/store.h"

#include <gtest/gtest.h>
#include <lmdb.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <chrono>
#include <thread>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "persistence/records.h"
#include "tests/unit/temp_dir.h"

namespace petrel::persistence {
namespace {

namespace fs = std::filesystem;

StoreOptions optionsFor(const std::string& dir) {
  StoreOptions o;
  o.dir = dir;
  o.map_size = 64ull << 20;
  return o;
}

std::unique_ptr<Store> openOk(const StoreOptions& o) {
  std::string err;
  auto s = Store::open(o, err);
  EXPECT_NE(s, nullptr) << err;
  return s;
}

MessageRecord message(const std::string& topic, const std::string& payload, uint8_t qos = 1) {
  MessageRecord m;
  m.topic = topic;
  m.payload = payload;
  m.origin = "publisher";
  m.qos = qos;
  return m;
}

QueueRecord entry(uint64_t seq, uint64_t msg_id, uint32_t bytes = 0) {
  QueueRecord q;
  q.seq = seq;
  q.msg_id = msg_id;
  q.qos = 1;
  q.bytes = bytes;
  return q;
}

std::vector<QueueRecord> queueOf(const Store& s, const std::string& cid, uint64_t from = 0,
                                 size_t limit = 1000) {
  std::vector<QueueRecord> out;
  s.readQueue(cid, from, limit, [&](const QueueRecord& q) { out.push_back(q); });
  return out;
}

std::vector<uint64_t> seqs(const std::vector<QueueRecord>& v) {
  std::vector<uint64_t> out;
  for (const auto& q : v) out.push_back(q.seq);
  return out;
}

bool hasMessage(const Store& s, uint64_t id) {
  MessageRecord m;
  return s.readMessage(id, m);
}

std::map<std::string, SessionRecord> sessionsOf(const Store& s) {
  std::map<std::string, SessionRecord> out;
  std::string err;
  auto add = [&](std::string_view cid, const SessionRecord& r) { out[std::string(cid)] = r; };
  EXPECT_TRUE(s.forEachSession(add, err)) << err;
  return out;
}

std::vector<std::pair<std::string, SubscriptionRecord>> subscriptionsOf(const Store& s) {
  std::vector<std::pair<std::string, SubscriptionRecord>> out;
  std::string err;
  EXPECT_TRUE(s.forEachSubscription(
      [&](std::string_view cid, const SubscriptionRecord& r) { out.emplace_back(std::string(cid), r); }, err))
      << err;
  return out;
}

std::vector<std::pair<std::string, uint16_t>> inboundOf(const Store& s) {
  std::vector<std::pair<std::string, uint16_t>> out;
  std::string err;
  auto add = [&](std::string_view cid, uint16_t pid) { out.emplace_back(std::string(cid), pid); };
  EXPECT_TRUE(s.forEachInboundQos2(add, err)) << err;
  return out;
}

std::map<std::string, uint64_t> retainedOf(const Store& s) {
  std::map<std::string, uint64_t> out;
  std::string err;
  auto add = [&](std::string_view t, uint64_t id) { out[std::string(t)] = id; };
  EXPECT_TRUE(s.forEachRetained(add, err)) << err;
  return out;
}

// Writes key -> value into the named database of the LMDB environment in
// `dir` (creating it), the way another program (or another Petrel) would.
void rawPut(const std::string& dir, const char* db, const std::string& key, const std::string& value) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  mdb_env_set_maxdbs(env, 16);
  mdb_env_set_mapsize(env, 64ull << 20);
  ASSERT_EQ(mdb_env_open(env, dir.c_str(), 0, 0640), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi;
  ASSERT_EQ(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

std::string u32le(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }

// The value under `key` in the named database, or nullopt; read the way
// another program would, with the store closed.
std::optional<std::string> rawGet(const std::string& dir, const char* db, const std::string& key) {
  MDB_env* env = nullptr;
  if (mdb_env_create(&env) != 0) return std::nullopt;
  mdb_env_set_maxdbs(env, 16);
  std::optional<std::string> out;
  if (mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0640) == 0) {
    MDB_txn* txn = nullptr;
    MDB_dbi dbi;
    if (mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) == 0) {
      MDB_val k{key.size(), const_cast<char*>(key.data())}, v;
      if (mdb_dbi_open(txn, db, 0, &dbi) == 0 && mdb_get(txn, dbi, &k, &v) == 0)
        out = std::string(static_cast<const char*>(v.mv_data), v.mv_size);
      mdb_txn_abort(txn);
    }
  }
  mdb_env_close(env);
  return out;
}

std::string msgKey(uint64_t id) {
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) k[i] = static_cast<char>(id >> (56 - 8 * i));  // big-endian, as the store keys
  return k;
}

std::string readFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

void writeFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string randomBytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

std::vector<std::string> asideFiles(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("data.mdb.corrupt-", 0) == 0) out.push_back(e.path().string());
  }
  return out;
}

// ---------------------------------------------------------------------------
// records.h: encodings

TEST(PersistenceRecords, MessageRoundTrip) {
  MessageRecord m;
  m.topic = "a/b/c";
  m.payload = std::string("bin\0ary\xff", 8);
  m.props = std::string("\x05\x03\x00\x02hi", 6);
  m.origin = "client-1";
  m.qos = 2;
  m.retain = true;
  m.expires_at_ms = 1764000000123;
  MessageRecord out;
  ASSERT_TRUE(decodeMessage(encodeMessage(m), out));
  EXPECT_EQ(out.topic, m.topic);
  EXPECT_EQ(out.payload, m.payload);
  EXPECT_EQ(out.props, m.props);
  EXPECT_EQ(out.origin, m.origin);
  EXPECT_EQ(out.qos, 2);
  EXPECT_TRUE(out.retain);
  EXPECT_EQ(out.expires_at_ms, m.expires_at_ms);

  // Written from views (Batch::putMessage), the record is the same bytes,
  // and its size is known before it is written.
  std::string from_view;
  encodeMessage(viewOf(m), from_view);
  EXPECT_EQ(from_view, encodeMessage(m));
  EXPECT_EQ(encodedMessageSize(viewOf(m)), from_view.size());
  MessageView v;
  ASSERT_TRUE(decodeMessage(std::string_view(from_view), v));
  EXPECT_EQ(v.topic, m.topic);
  EXPECT_EQ(v.payload, m.payload);
  EXPECT_EQ(v.props, m.props);
  EXPECT_EQ(v.origin, m.origin);
  EXPECT_EQ(v.expires_at_ms, m.expires_at_ms);

  MessageRecord empty;
  EXPECT_EQ(encodedMessageSize(viewOf(empty)), encodeMessage(empty).size());
  ASSERT_TRUE(decodeMessage(encodeMessage(empty), out));
  EXPECT_EQ(out.topic, "");
  EXPECT_EQ(out.payload, "");
  EXPECT_FALSE(out.retain);
  EXPECT_EQ(out.expires_at_ms, 0);
}

TEST(PersistenceRecords, SessionRoundTripWithAndWithoutWill) {
  SessionRecord s;
  s.version = 5;
  s.expiry_interval = 3600;
  s.expires_at_ms = 1764000000000;
  s.will_at_ms = 1764000005000;
  s.username = "alice";
  WillRecord w;
  w.topic = "will/t";
  w.payload = std::string("\0bye", 4);
  w.props = std::string("\x05\x18\x00\x00\x00\x05", 6);
  w.qos = 1;
  w.retain = true;
  s.will = w;
  SessionRecord out;
  ASSERT_TRUE(decodeSession(encodeSession(s), out));
  EXPECT_EQ(out.version, 5);
  EXPECT_EQ(out.expiry_interval, 3600u);
  EXPECT_EQ(out.expires_at_ms, s.expires_at_ms);
  EXPECT_EQ(out.will_at_ms, s.will_at_ms);
  EXPECT_EQ(out.username, s.username);
  ASSERT_TRUE(out.will.has_value());
  EXPECT_EQ(out.will->topic, w.topic);
  EXPECT_EQ(out.will->payload, w.payload);
  EXPECT_EQ(out.will->props, w.props);
  EXPECT_EQ(out.will->qos, 1);
  EXPECT_TRUE(out.will->retain);

  SessionRecord plain;
  plain.version = 4;
  plain.expiry_interval = 0xFFFFFFFF;
  SessionRecord out2;
  ASSERT_TRUE(decodeSession(encodeSession(plain), out2));
  EXPECT_EQ(out2.version, 4);
  EXPECT_EQ(out2.expiry_interval, 0xFFFFFFFFu);
  EXPECT_FALSE(out2.will.has_value());
}

// A session record as the first persistence release wrote it (record
// format 1, store schema 1): the username as a plain string, no presence
// flag. A store of the same schema version must still load; were the
// layout incompatible, the schema version would have to change (so that
// the store is refused as "schema version N" rather than as corrupt).
// Pins the byte layout of schema 1's session record: a change to it must
// come with a new schema version and a migration. (Schema 2 changed only
// the reference counts: a schema 1 store is upgraded in place and its
// session records are read as they are.)
TEST(PersistenceRecords, SessionRecordLayoutOfSchema1Decodes) {
  auto oldLayout = [](const std::string& username) {
    std::string s;
    s.push_back(1);  // record format
    s.push_back(4);  // MQTT 3.1.1
    const uint32_t expiry = 0xFFFFFFFF;
    const int64_t zero = 0;
    s.append(reinterpret_cast<const char*>(&expiry), 4);
    s.append(reinterpret_cast<const char*>(&zero), 8);  // expires_at_ms
    s.append(reinterpret_cast<const char*>(&zero), 8);  // will_at_ms
    s.push_back(username.empty() ? 0 : 1);              // has a username
    const uint32_t n = static_cast<uint32_t>(username.size());
    s.append(reinterpret_cast<const char*>(&n), 4);
    s.append(username);
    s.push_back(0);  // no will
    return s;
  };
  for (const std::string user : {"", "alice"}) {
    SessionRecord r;
    EXPECT_TRUE(decodeSession(oldLayout(user), r)) << "username '" << user << "'";
    EXPECT_EQ(r.version, 4);
    EXPECT_EQ(r.expiry_interval, 0xFFFFFFFFu);
    EXPECT_FALSE(r.will.has_value());
    EXPECT_EQ(r.username.has_value(), !user.empty());
  }
  EXPECT_EQ(Store::kOldestReadableSchema, 1u) << "schema 1 stores are still opened: their records must decode";
}

TEST(PersistenceRecords, SubscriptionRoundTrip) {
  SubscriptionRecord s;
  s.key = "$share/grp/x/+";
  s.group = "grp";
  s.filter = "x/+";
  s.qos = 2;
  s.no_local = true;
  s.retain_as_published = true;
  s.retain_handling = 2;
  s.subscription_id = 268435455;
  SubscriptionRecord out;
  ASSERT_TRUE(decodeSubscription(s.key, encodeSubscription(s), out));
  EXPECT_EQ(out.key, s.key);
  EXPECT_EQ(out.group, "grp");
  EXPECT_EQ(out.filter, "x/+");
  EXPECT_EQ(out.qos, 2);
  EXPECT_TRUE(out.no_local);
  EXPECT_TRUE(out.retain_as_published);
  EXPECT_EQ(out.retain_handling, 2);
  EXPECT_EQ(out.subscription_id, 268435455u);

  // Each flag on its own.
  s.no_local = false;
  ASSERT_TRUE(decodeSubscription(s.key, encodeSubscription(s), out));
  EXPECT_FALSE(out.no_local);
  EXPECT_TRUE(out.retain_as_published);
  s.no_local = true;
  s.retain_as_published = false;
  ASSERT_TRUE(decodeSubscription(s.key, encodeSubscription(s), out));
  EXPECT_TRUE(out.no_local);
  EXPECT_FALSE(out.retain_as_published);
}

// Every shape of a queue entry: the optional fields (a share group's key,
// a declared queue's times) are written only when set, in that order, so
// that an entry without them is as long as one written before they
// existed (8 + 1 + 1 + 2 + 4 + 1 bytes, then 4 per subscription
// identifier).
TEST(PersistenceRecords, QueueEntriesOfEveryShapeRoundTrip) {
  for (size_t ids = 0; ids <= 3; ++ids) {
    for (bool group : {false, true}) {
      for (bool times : {false, true}) {
        QueueRecord q;
        q.msg_id = 42 + ids;
        q.qos = 1;
        q.packet_id = 9;
        q.bytes = 64;
        for (size_t i = 0; i < ids; ++i) q.subscription_ids.push_back(static_cast<uint32_t>(1000 + i));
        if (group) q.group = "$share/g/t";
        if (times) {
          q.queued_at_ms = 1700000000000;
          q.deadline_ms = 1700000060000;
        }
        const std::string e = encodeQueue(q);
        const size_t want = 17 + 4 * ids + (group || times ? 4 + q.group.size() : 0) + (times ? 16 : 0);
        EXPECT_EQ(e.size(), want) << ids << " ids, group " << group << ", times " << times;
        QueueRecord out;
        ASSERT_TRUE(decodeQueue(7, e, out)) << ids << " ids, group " << group << ", times " << times;
        EXPECT_EQ(out.msg_id, q.msg_id);
        EXPECT_EQ(out.subscription_ids, q.subscription_ids);
        EXPECT_EQ(out.group, q.group);
        EXPECT_EQ(out.queued_at_ms, q.queued_at_ms);
        EXPECT_EQ(out.deadline_ms, q.deadline_ms);
      }
    }
  }
}

TEST(PersistenceRecords, QueueRoundTrip) {
  QueueRecord q;
  q.msg_id = 0x0102030405060708ull;
  q.qos = 2;
  q.retain = true;
  q.released = true;
  q.packet_id = 65535;
  q.bytes = 123456;
  q.subscription_ids = {1, 7, 268435455};
  QueueRecord out;
  ASSERT_TRUE(decodeQueue(99, encodeQueue(q), out));
  EXPECT_EQ(out.seq, 99u);
  EXPECT_EQ(out.msg_id, q.msg_id);
  EXPECT_EQ(out.qos, 2);
  EXPECT_TRUE(out.retain);
  EXPECT_TRUE(out.released);
  EXPECT_EQ(out.packet_id, 65535);
  EXPECT_EQ(out.bytes, 123456u);
  EXPECT_EQ(out.subscription_ids, q.subscription_ids);

  QueueRecord plain = entry(0, 5);
  out.subscription_ids = {3};
  ASSERT_TRUE(decodeQueue(1, encodeQueue(plain), out));
  EXPECT_FALSE(out.retain);
  EXPECT_FALSE(out.released);
  EXPECT_EQ(out.packet_id, 0);
  EXPECT_TRUE(out.subscription_ids.empty());
}

TEST(PersistenceRecords, TruncatedOrExtendedRecordsAreRejected) {
  MessageRecord m = message("t", "payload");
  SessionRecord s;
  s.version = 5;
  s.will = WillRecord{"w", "p", "", 1, false};
  SubscriptionRecord sub;
  sub.filter = "f";
  QueueRecord q = entry(1, 2);
  q.subscription_ids = {4, 5};
  const std::string em = encodeMessage(m), es = encodeSession(s), esub = encodeSubscription(sub),
                    eq = encodeQueue(q);
  for (size_t n = 0; n < em.size(); ++n) {
    MessageRecord o;
    EXPECT_FALSE(decodeMessage(em.substr(0, n), o)) << n;
  }
  for (size_t n = 0; n < es.size(); ++n) {
    SessionRecord o;
    EXPECT_FALSE(decodeSession(es.substr(0, n), o)) << n;
  }
  for (size_t n = 0; n < esub.size(); ++n) {
    SubscriptionRecord o;
    EXPECT_FALSE(decodeSubscription("f", esub.substr(0, n), o)) << n;
  }
  for (size_t n = 0; n < eq.size(); ++n) {
    QueueRecord o;
    EXPECT_FALSE(decodeQueue(1, eq.substr(0, n), o)) << n;
  }
  // Trailing bytes are damage too.
  MessageRecord om;
  SessionRecord os;
  SubscriptionRecord osub;
  QueueRecord oq;
  EXPECT_FALSE(decodeMessage(em + "x", om));
  EXPECT_FALSE(decodeSession(es + "x", os));
  EXPECT_FALSE(decodeSubscription("f", esub + "x", osub));
  EXPECT_FALSE(decodeQueue(1, eq + "x", oq));
}

TEST(PersistenceRecords, InvalidFieldValuesAreRejected) {
  // Another record format version.
  std::string em = encodeMessage(message("t", "p"));
  em[0] = 2;
  MessageRecord om;
  EXPECT_FALSE(decodeMessage(em, om));
  // QoS 3 in a message, protocol level 6 in a session, retain handling 3.
  MessageRecord m = message("t", "p", 3);
  EXPECT_FALSE(decodeMessage(encodeMessage(m), om));
  SessionRecord s;
  s.version = 6;
  SessionRecord os;
  EXPECT_FALSE(decodeSession(encodeSession(s), os));
  SubscriptionRecord sub;
  sub.retain_handling = 3;
  SubscriptionRecord osub;
  EXPECT_FALSE(decodeSubscription("k", encodeSubscription(sub), osub));
  // A queue entry is QoS 1 or 2, never 0.
  QueueRecord q = entry(1, 1);
  q.qos = 0;
  QueueRecord oq;
  EXPECT_FALSE(decodeQueue(1, encodeQueue(q), oq));
}

TEST(PersistenceRecords, KeysSortNumericallyAndKeepClientsApart) {
  for (uint64_t v : {0ull, 1ull, 255ull, 256ull, 0x0102030405060708ull, ~0ull}) {
    EXPECT_EQ(u64Key(v).size(), 8u);
    EXPECT_EQ(readU64Key(u64Key(v)), v);
  }
  EXPECT_LT(u64Key(255), u64Key(256));
  EXPECT_LT(u64Key(65535), u64Key(65536));
  EXPECT_LT(seqKey("a", 9), seqKey("a", 10));
  EXPECT_EQ(clientKey("abc", "x"), std::string("abc\0x", 5));
  // Every key of client "a" sorts before every key of client "ab".
  EXPECT_LT(seqKey("a", ~0ull), seqKey("ab", 0));
  // The bytes: big endian, after the client id and a zero byte.
  EXPECT_EQ(u64Key(0x0102030405060708ull), std::string("\x01\x02\x03\x04\x05\x06\x07\x08", 8));
  EXPECT_EQ(seqKey("ab", 0x0102030405060708ull), std::string("ab\0\x01\x02\x03\x04\x05\x06\x07\x08", 11));
  // Rebuilt in place over a longer key, a shorter one and an empty id.
  std::string k = seqKey("a-long-client-id", 1);
  seqKeyInto(k, "c", 0xFFull);
  EXPECT_EQ(k, std::string("c\0\0\0\0\0\0\0\0\xFF", 10));
  seqKeyInto(k, "", 2);
  EXPECT_EQ(k, std::string("\0\0\0\0\0\0\0\0\x02", 9));
  // A key shorter than 8 bytes reads as the number its bytes make.
  EXPECT_EQ(readU64Key(std::string("\x01\x00", 2)), 256u);
  EXPECT_EQ(readU64Key(""), 0u);
}

TEST(PersistenceRecords, BatchCountsOperations) {
  Batch b;
  EXPECT_TRUE(b.empty());
  b.putMessage(1, message("t", "p"), 1);
  b.addRefs(1, 1);
  b.putSession("c", SessionRecord{});
  b.putQueue("c", entry(1, 1));
  b.setRetained("t", 1);
  EXPECT_FALSE(b.empty());
  EXPECT_EQ(b.count(), 5u);
  b.clear();
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.count(), 0u);
}

// ---------------------------------------------------------------------------
// Store

TEST(PersistenceStore, CreatesAnEmptyStore) {
  TempDir t;
  const std::string dir = t.sub("data");  // created by open
  auto s = openOk(optionsFor(dir));
  ASSERT_NE(s, nullptr);
  EXPECT_TRUE(fs::exists(dir + "/data.mdb"));
  const StoreStats st = s->stats();
  EXPECT_EQ(st.sessions, 0u);
  EXPECT_EQ(st.subscriptions, 0u);
  EXPECT_EQ(st.queued, 0u);
  EXPECT_EQ(st.messages, 0u);
  EXPECT_EQ(st.retained, 0u);
  EXPECT_EQ(st.inbound_qos2, 0u);
  EXPECT_GT(st.used_bytes, 0u);
  EXPECT_EQ(s->maxMessageId(), 0u);
  EXPECT_TRUE(sessionsOf(*s).empty());
  EXPECT_TRUE(queueOf(*s, "nobody").empty());
  EXPECT_EQ(s->queueInfo("nobody").count, 0u);
  EXPECT_FALSE(hasMessage(*s, 1));
}

TEST(PersistenceStore, BatchCommitsAndReadsBack) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  SessionRecord sess;
  sess.version = 5;
  sess.expiry_interval = 600;
  sess.will = WillRecord{"will/t", "bye", "", 1, false};
  SubscriptionRecord sub;
  sub.key = "a/#";
  sub.filter = "a/#";
  sub.qos = 2;
  sub.subscription_id = 7;
  MessageRecord msg = message("a/b", "hello", 2);
  QueueRecord q = entry(1, 10, 5);
  q.qos = 2;
  q.packet_id = 33;
  q.subscription_ids = {7};

  Batch& b = s->batch();
  b.putSession("c1", sess);
  b.putSubscription("c1", sub);
  b.putMessage(10, msg, 2);
  b.putQueue("c1", q);
  b.putInboundQos2("c1", 4242);
  b.setRetained("a/b", 10);
  // Nothing is visible before the commit.
  EXPECT_EQ(s->stats().sessions, 0u);
  s->drain();

  const auto sessions = sessionsOf(*s);
  ASSERT_EQ(sessions.size(), 1u);
  const SessionRecord& rs = sessions.at("c1");
  EXPECT_EQ(rs.version, 5);
  EXPECT_EQ(rs.expiry_interval, 600u);
  ASSERT_TRUE(rs.will.has_value());
  EXPECT_EQ(rs.will->topic, "will/t");

  const auto subs = subscriptionsOf(*s);
  ASSERT_EQ(subs.size(), 1u);
  EXPECT_EQ(subs[0].first, "c1");
  EXPECT_EQ(subs[0].second.key, "a/#");
  EXPECT_EQ(subs[0].second.qos, 2);
  EXPECT_EQ(subs[0].second.subscription_id, 7u);

  const auto queue = queueOf(*s, "c1");
  ASSERT_EQ(queue.size(), 1u);
  EXPECT_EQ(queue[0].seq, 1u);
  EXPECT_EQ(queue[0].msg_id, 10u);
  EXPECT_EQ(queue[0].packet_id, 33);
  EXPECT_EQ(queue[0].subscription_ids, std::vector<uint32_t>{7});

  MessageRecord rm;
  ASSERT_TRUE(s->readMessage(10, rm));
  EXPECT_EQ(rm.topic, "a/b");
  EXPECT_EQ(rm.payload, "hello");
  EXPECT_EQ(rm.qos, 2);

  EXPECT_EQ(inboundOf(*s), (std::vector<std::pair<std::string, uint16_t>>{{"c1", 4242}}));
  EXPECT_EQ(retainedOf(*s), (std::map<std::string, uint64_t>{{"a/b", 10}}));
  EXPECT_EQ(s->maxMessageId(), 10u);

  const StoreStats st = s->stats();
  EXPECT_EQ(st.sessions, 1u);
  EXPECT_EQ(st.subscriptions, 1u);
  EXPECT_EQ(st.queued, 1u);
  EXPECT_EQ(st.messages, 1u);
  EXPECT_EQ(st.retained, 1u);
  EXPECT_EQ(st.inbound_qos2, 1u);
  EXPECT_EQ(st.map_size, 64ull << 20);
  EXPECT_GT(s->usedBytes(), 0u);

  // Overwrites and deletes.
  sess.expiry_interval = 30;
  s->batch().putSession("c1", sess);
  s->batch().deleteSubscription("c1", "a/#");
  s->batch().deleteSubscription("c1", "never/subscribed");
  s->batch().deleteInboundQos2("c1", 4242);
  s->batch().deleteInboundQos2("c1", 1);  // unknown id: no error
  q.released = true;
  s->batch().putQueue("c1", q);
  s->drain();
  EXPECT_EQ(sessionsOf(*s).at("c1").expiry_interval, 30u);
  EXPECT_TRUE(subscriptionsOf(*s).empty());
  EXPECT_TRUE(inboundOf(*s).empty());
  ASSERT_EQ(queueOf(*s, "c1").size(), 1u);
  EXPECT_TRUE(queueOf(*s, "c1")[0].released);
}

TEST(PersistenceStore, ReadMessagesReadsAWindowInOneCallAndSkipsMissingIds) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  for (uint64_t id = 1; id <= 5; ++id) s->batch().putMessage(id, message("q/" + std::to_string(id), "m"), 1);
  s->drain();
  std::vector<std::pair<uint64_t, std::string>> got;
  s->readMessages({4, 2, 99, 5}, [&](uint64_t id, MessageRecord&& m) { got.emplace_back(id, m.topic); });
  EXPECT_EQ(got, (std::vector<std::pair<uint64_t, std::string>>{{4, "q/4"}, {2, "q/2"}, {5, "q/5"}}));
  got.clear();
  s->readMessages({}, [&](uint64_t id, MessageRecord&& m) { got.emplace_back(id, m.topic); });
  EXPECT_TRUE(got.empty());
}

// A window's reads step from one record to the next while the ids run in
// sequence, and look up any other: runs broken by ids never stored, by
// ids deleted, by a step back and by an id twice all read what is there,
// in the order asked.
TEST(PersistenceStore, ReadMessagesAcrossRunsGapsAndStepsBack) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  for (uint64_t id = 1; id <= 2000; ++id)
    if (id % 100 != 50) s->batch().putMessage(id, message("r/" + std::to_string(id), "p"), 1);
  s->drain();
  s->batch().addRefs(7, -1);  // deleted: its run goes on at 8
  s->drain();
  std::vector<uint64_t> ids;
  for (uint64_t id = 1; id <= 160; ++id) ids.push_back(id);  // through 7 and 50
  for (uint64_t id : {100, 99, 99, 101, 1999, 2000, 2001, 2002, 1}) ids.push_back(id);
  std::vector<uint64_t> want;
  for (uint64_t id : ids)
    if (id != 7 && id % 100 != 50 && id <= 2000) want.push_back(id);
  std::vector<uint64_t> got;
  s->readMessageViews(ids, [&](uint64_t id, const MessageView& m) {
    EXPECT_EQ(m.topic, "r/" + std::to_string(id));
    EXPECT_EQ(m.payload, "p");
    got.push_back(id);
  });
  EXPECT_EQ(got, want);
}

// Messages are put through a cursor, appended when their id is above every
// stored one (ids grow); an id below the last, or one already stored, goes
// in its place all the same, in one commit or across commits.
TEST(PersistenceStore, MessagesPutOutOfIdOrderAndRewrittenAreAllThere) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  for (uint64_t id : {500, 10, 700, 20, 600}) s->batch().putMessage(id, message("a/" + std::to_string(id), "1"), 1);
  s->batch().putMessage(700, message("b/700", "2"), 1);  // the last id again, same commit
  s->drain();
  for (uint64_t id = 1000; id < 1300; ++id) s->batch().putMessage(id, message("c/" + std::to_string(id), "3"), 1);
  s->batch().putMessage(15, message("b/15", "4"), 1);    // far below, after a run of appends
  s->batch().putMessage(1299, message("b/1299", "5"), 1);  // the last again
  s->drain();
  std::vector<uint64_t> ids = {10, 15, 20, 500, 600, 700, 1000, 1150, 1299};
  std::vector<std::pair<uint64_t, std::string>> got;
  s->readMessages(ids, [&](uint64_t id, MessageRecord&& m) { got.emplace_back(id, m.topic + "=" + m.payload); });
  EXPECT_EQ(got, (std::vector<std::pair<uint64_t, std::string>>{{10, "a/10=1"},
                                                                  {15, "b/15=4"},
                                                                  {20, "a/20=1"},
                                                                  {500, "a/500=1"},
                                                                  {600, "a/600=1"},
                                                                  {700, "b/700=2"},
                                                                  {1000, "c/1000=3"},
                                                                  {1150, "c/1150=3"},
                                                                  {1299, "b/1299=5"}}));
  EXPECT_EQ(s->stats().messages, 306u);
}

TEST(PersistenceStore, MessageLivesWhileReferenced) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  // One message, two queue entries (two sessions): stored once.
  s->batch().putMessage(5, message("t", "shared"), 2);
  s->batch().putQueue("a", entry(1, 5));
  s->batch().putQueue("b", entry(1, 5));
  s->drain();
  EXPECT_EQ(s->stats().messages, 1u);
  EXPECT_EQ(s->stats().queued, 2u);

  s->batch().deleteQueue("a", 1, 5);
  s->drain();
  EXPECT_TRUE(hasMessage(*s, 5)) << "still referenced by b's entry";

  // Deleting an entry that is not there (gone with its session) drops no
  // reference.
  s->batch().deleteQueue("a", 1, 5);
  s->batch().deleteQueue("b", 99, 5);
  s->drain();
  EXPECT_TRUE(hasMessage(*s, 5));

  s->batch().deleteQueue("b", 1, 5);
  s->drain();
  EXPECT_FALSE(hasMessage(*s, 5));
  EXPECT_EQ(s->stats().messages, 0u);
  EXPECT_EQ(s->stats().queued, 0u);
}

// The broker's QoS 1 path for a message queued while its session was
// offline: the entry is on disk (no packet id); on sending, it is rewritten
// with its packet id, and the PUBACK may come back before that rewrite has
// committed, so rewrite and delete land in one commit. The entry on disk
// must go, and the message with it.
TEST(PersistenceStore, RewriteAndDeleteInOneCommitRemoveTheStoredEntry) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  s->batch().putQueue("sub", entry(1, 9));
  s->batch().putMessage(9, message("t", "queued offline"), 1);
  s->drain();
  ASSERT_EQ(queueOf(*s, "sub").size(), 1u);

  QueueRecord sent = entry(1, 9);
  sent.packet_id = 17;
  s->batch().putQueue("sub", sent);     // sent: now with its packet id
  s->batch().deleteQueue("sub", 1, 9);  // PUBACK
  s->drain();
  EXPECT_TRUE(queueOf(*s, "sub").empty()) << "an acknowledged entry stayed on disk";
  EXPECT_EQ(s->queueInfo("sub").count, 0u);
  EXPECT_FALSE(hasMessage(*s, 9));
  EXPECT_EQ(s->stats().queued, 0u);
}

// The same within one commit, from scratch: put, rewrite, delete.
TEST(PersistenceStore, PutRewriteDeleteInOneCommitLeaveNothing) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  QueueRecord q = entry(1, 3);
  s->batch().putQueue("sub", q);
  s->batch().putMessage(3, message("t", "x"), 1);
  q.packet_id = 5;
  s->batch().putQueue("sub", q);
  s->batch().deleteQueue("sub", 1, 3);
  s->drain();
  EXPECT_TRUE(queueOf(*s, "sub").empty());
  EXPECT_FALSE(hasMessage(*s, 3));
  EXPECT_EQ(s->stats().messages, 0u);
}

// Queues `count` messages for `client` from seq 1, each with a message record
// of its own (ids from ++id), and deletes every `ack_every`-th entry in the
// same batch, as its acknowledgement would. With `drain_each`, each message
// is its own commit; otherwise they all go in one.
void queueAndAckSome(Store& s, const std::string& client, uint64_t count, uint64_t ack_every, uint64_t& id,
                     bool drain_each) {
  for (uint64_t seq = 1; seq <= count; ++seq) {
    s.batch().putQueue(client, entry(seq, ++id));
    s.batch().putMessage(id, message("t", "m"), 1);
    if (seq % ack_every == 0) s.batch().deleteQueue(client, seq, id);
    if (drain_each) s.drain();
  }
  if (!drain_each) s.drain();
}

// The group commit's tables are kept from one group to the next, grown for
// a large group and made small again after it: a group of 20,000 ops (half
// of its entries acknowledged within it, so they cancel out), then small
// groups, then a session ended in a group with its entries, all apply as
// they would one by one.
TEST(PersistenceStore, GroupsLargeThenSmallCancelAndApplyAlike) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  uint64_t id = 0;
  queueAndAckSome(*s, "big", 5000, 2, id, false);
  EXPECT_EQ(queueOf(*s, "big", 0, 10000).size(), 2500u);
  EXPECT_EQ(s->stats().messages, 2500u);
  queueAndAckSome(*s, "small", 40, 4, id, true);
  EXPECT_EQ(queueOf(*s, "small").size(), 30u);
  EXPECT_EQ(s->stats().messages, 2530u);
  s->batch().putQueue("gone", entry(1, ++id));
  s->batch().putMessage(id, message("t", "m"), 1);
  s->batch().deleteSession("gone");
  s->batch().putQueue("gone", entry(2, ++id));
  s->batch().putMessage(id, message("t", "m"), 1);
  s->batch().deleteQueue("gone", 2, id);
  s->drain();
  EXPECT_TRUE(queueOf(*s, "gone").empty());
  EXPECT_EQ(s->stats().messages, 2530u);
}

// The group commit keeps its bookkeeping in a 512 KiB scratch buffer and
// takes the rest from the heap: a group well over a hundred times that
// (200,000 messages put, 100,000 of them deleted in the same group: half a
// million ops, tens of megabytes of bookkeeping) cancels and applies as a
// small one does, and the groups after it use the buffer again.
TEST(PersistenceStore, AGroupFarPastTheCommitsScratchBufferCancelsAlike) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  constexpr uint64_t kMessages = 200000;
  uint64_t id = 0;
  queueAndAckSome(*s, "huge", kMessages, 2, id, false);
  EXPECT_EQ(queueOf(*s, "huge", 0, kMessages).size(), kMessages / 2);
  EXPECT_EQ(s->stats().messages, kMessages / 2);
  queueAndAckSome(*s, "after", 40, 4, id, true);
  EXPECT_EQ(queueOf(*s, "after").size(), 30u);
  EXPECT_EQ(s->stats().messages, kMessages / 2 + 30);
}

// Which batches the writer may defer: deletions nobody waits for.
TEST(PersistenceRecords, OnlyUnawaitedDeletionsAreDeferrable) {
  Batch b;
  EXPECT_TRUE(b.deferrable());
  b.deleteQueue("c", 1, 10);
  b.addRefs(10, -1);
  b.deleteSubscription("c", "t/#");
  b.deleteInboundQos2("c", 5);
  b.deleteSession("gone");
  EXPECT_TRUE(b.deferrable());
  b.markAwaited();
  EXPECT_FALSE(b.deferrable()) << "an acknowledgement waits for it";
  b.clear();
  EXPECT_TRUE(b.deferrable());
  b.addRefs(10, 1);
  EXPECT_FALSE(b.deferrable()) << "a new holder is not a deletion";
  auto puts = std::vector<std::function<void(Batch&)>>{
      [](Batch& x) { x.putMessage(1, message("t", "p"), 1); },
      [](Batch& x) { x.putSession("c", SessionRecord{}); },
      [](Batch& x) { x.putQueue("c", QueueRecord{}); },
      [](Batch& x) { x.putInboundQos2("c", 1); },
      [](Batch& x) { x.setRetained("t", 0); },
      // A fired delayed publish: its delete lost in a crash would publish
      // it a second time.
      [](Batch& x) { x.deleteDelayed(DelayedKey{1, 2}); },
  };
  for (size_t i = 0; i < puts.size(); ++i) {
    Batch p;
    p.deleteQueue("c", 1, 10);
    puts[i](p);
    EXPECT_FALSE(p.deferrable()) << "put " << i;
  }
}

// A deferred commit is only delayed: a batch of deletions that nobody
// waits for and nothing follows still commits on its own, and an awaited
// batch (or drain()) commits the deferred ones with it.
TEST(PersistenceStore, DeferredDeletionsCommitWithoutAnyoneAsking) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  for (uint64_t i = 1; i <= 3; ++i) s->batch().putMessage(i, message("t", "p"), 1);
  s->drain();
  s->batch().addRefs(1, -1);
  const uint64_t deferred = s->ticket();
  ASSERT_TRUE(s->batch().deferrable());
  s->submit();
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (s->committed() < deferred && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_GE(s->committed(), deferred) << "a deferred commit happened within 10 s";
  EXPECT_FALSE(hasMessage(*s, 1));
  s->batch().addRefs(2, -1);
  s->submit();
  s->batch().addRefs(3, -1);
  const uint64_t awaited = s->awaitedTicket();
  s->submit();
  while (s->committed() < awaited && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_GE(s->committed(), awaited);
  EXPECT_FALSE(hasMessage(*s, 2)) << "committed with the awaited batch after it";
  EXPECT_FALSE(hasMessage(*s, 3));
}

TEST(PersistenceStore, AddRefsKeepsAndDropsMessages) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  s->batch().putMessage(1, message("t", "x"), 1);
  s->batch().addRefs(1, 2);   // 3
  s->batch().addRefs(1, -2);  // 1
  s->drain();
  EXPECT_TRUE(hasMessage(*s, 1));
  s->batch().addRefs(1, -1);  // 0: gone
  s->drain();
  EXPECT_FALSE(hasMessage(*s, 1));
}

TEST(PersistenceStore, RetainedReplacementDropsTheOldMessage) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  s->batch().putMessage(10, message("r/t", "old"), 1);
  s->batch().setRetained("r/t", 10);
  s->drain();
  EXPECT_TRUE(hasMessage(*s, 10));

  s->batch().putMessage(11, message("r/t", "new"), 1);
  s->batch().setRetained("r/t", 11);
  s->drain();
  EXPECT_FALSE(hasMessage(*s, 10)) << "the replaced retained message must go";
  EXPECT_TRUE(hasMessage(*s, 11));
  EXPECT_EQ(retainedOf(*s), (std::map<std::string, uint64_t>{{"r/t", 11}}));

  // Setting the same message again keeps it.
  s->batch().setRetained("r/t", 11);
  s->drain();
  EXPECT_TRUE(hasMessage(*s, 11));

  // A retained message that is also queued outlives the retained slot.
  s->batch().putMessage(12, message("r/t", "queued too"), 2);
  s->batch().putQueue("c", entry(1, 12));
  s->batch().setRetained("r/t", 12);
  s->drain();
  EXPECT_FALSE(hasMessage(*s, 11));
  s->batch().setRetained("r/t", 0);  // cleared
  s->drain();
  EXPECT_TRUE(retainedOf(*s).empty());
  EXPECT_TRUE(hasMessage(*s, 12));
  s->batch().deleteQueue("c", 1, 12);
  s->drain();
  EXPECT_FALSE(hasMessage(*s, 12));

  // Clearing a topic that has nothing retained is harmless.
  s->batch().setRetained("none", 0);
  s->drain();
  EXPECT_EQ(s->stats().retained, 0u);
  EXPECT_EQ(s->stats().messages, 0u);
}

TEST(PersistenceStore, DeleteSessionCascades) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  SessionRecord sess;
  sess.expiry_interval = 60;
  SubscriptionRecord sub;
  sub.key = sub.filter = "x";
  // "a" is deleted; "ab" (whose keys share the prefix "a") and "b" stay.
  for (const char* cid : {"a", "ab", "b"}) {
    s->batch().putSession(cid, sess);
    s->batch().putSubscription(cid, sub);
    s->batch().putInboundQos2(cid, 1);
  }
  s->batch().putMessage(1, message("x", "only a"), 2);
  s->batch().putMessage(2, message("x", "a and b"), 2);
  s->batch().putMessage(3, message("x", "ab"), 1);
  s->batch().putQueue("a", entry(1, 1));
  s->batch().putQueue("a", entry(2, 1));
  s->batch().putQueue("a", entry(3, 2));
  s->batch().putQueue("b", entry(1, 2));
  s->batch().putQueue("ab", entry(1, 3));
  s->drain();
  ASSERT_EQ(s->stats().queued, 5u);

  s->batch().deleteSession("a");
  s->drain();
  const auto sessions = sessionsOf(*s);
  EXPECT_EQ(sessions.size(), 2u);
  EXPECT_EQ(sessions.count("a"), 0u);
  for (const auto& [cid, r] : subscriptionsOf(*s)) EXPECT_NE(cid, "a");
  EXPECT_EQ(subscriptionsOf(*s).size(), 2u);
  EXPECT_EQ(inboundOf(*s), (std::vector<std::pair<std::string, uint16_t>>{{"ab", 1}, {"b", 1}}));
  EXPECT_TRUE(queueOf(*s, "a").empty());
  EXPECT_EQ(queueOf(*s, "ab").size(), 1u);
  EXPECT_EQ(queueOf(*s, "b").size(), 1u);
  EXPECT_FALSE(hasMessage(*s, 1)) << "referenced only by a's queue";
  EXPECT_TRUE(hasMessage(*s, 2)) << "b still holds it";
  EXPECT_TRUE(hasMessage(*s, 3));
  EXPECT_EQ(s->stats().messages, 2u);

  // Deleting an unknown session, or twice, is harmless.
  s->batch().deleteSession("a");
  s->batch().deleteSession("zzz");
  s->drain();
  EXPECT_EQ(sessionsOf(*s).size(), 2u);
  EXPECT_TRUE(hasMessage(*s, 2));
}

TEST(PersistenceStore, ReadQueueRangeLimitAndOrder) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  s->batch().putMessage(1, message("t", "m"), 20);
  // Written out of order, and across a byte boundary of the big-endian key.
  for (uint64_t seq : {300, 5, 256, 1, 255, 2, 1000000, 3, 4, 257})
    s->batch().putQueue("q", entry(seq, 1, 10));
  // Neighbours whose keys sort right around q's.
  s->batch().putQueue("p", entry(7, 1));
  s->batch().putQueue("q2", entry(1, 1));
  s->batch().putQueue("r", entry(2, 1));
  s->drain();

  EXPECT_EQ(seqs(queueOf(*s, "q")),
            (std::vector<uint64_t>{1, 2, 3, 4, 5, 255, 256, 257, 300, 1000000}));
  EXPECT_EQ(seqs(queueOf(*s, "q", 4, 3)), (std::vector<uint64_t>{4, 5, 255}));
  EXPECT_EQ(seqs(queueOf(*s, "q", 6, 2)), (std::vector<uint64_t>{255, 256}));
  EXPECT_EQ(seqs(queueOf(*s, "q", 301)), (std::vector<uint64_t>{1000000}));
  EXPECT_TRUE(queueOf(*s, "q", 1000001).empty());
  EXPECT_TRUE(queueOf(*s, "q", 0, 0).empty());
  EXPECT_EQ(s->readQueue("q", 0, 4, [](const QueueRecord&) {}), 4u);
  EXPECT_EQ(seqs(queueOf(*s, "q2")), (std::vector<uint64_t>{1}));
  EXPECT_EQ(seqs(queueOf(*s, "p")), (std::vector<uint64_t>{7}));
  EXPECT_TRUE(queueOf(*s, "o").empty());
  EXPECT_TRUE(queueOf(*s, "").empty());

  const auto qi = s->queueInfo("q");
  EXPECT_EQ(qi.count, 10u);
  EXPECT_EQ(qi.first_seq, 1u);
  EXPECT_EQ(qi.last_seq, 1000000u);
  EXPECT_EQ(qi.bytes, 100u);
  const auto none = s->queueInfo("nobody");
  EXPECT_EQ(none.count, 0u);
  EXPECT_EQ(none.first_seq, 0u);
  EXPECT_EQ(none.bytes, 0u);
  const auto p = s->queueInfo("p");
  EXPECT_EQ(p.count, 1u);
  EXPECT_EQ(p.first_seq, 7u);
  EXPECT_EQ(p.last_seq, 7u);
}

TEST(PersistenceStore, ReopenKeepsEverything) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  {
    auto s = openOk(o);
    ASSERT_NE(s, nullptr);
    SessionRecord sess;
    sess.version = 4;
    sess.expiry_interval = 0xFFFFFFFF;
    SubscriptionRecord sub;
    sub.key = sub.filter = "k/#";
    sub.qos = 1;
    s->batch().putSession("keep", sess);
    s->batch().putSubscription("keep", sub);
    s->batch().putMessage(77, message("k/1", "payload"), 2);
    s->batch().putQueue("keep", entry(3, 77, 7));
    s->batch().putInboundQos2("keep", 9);
    s->batch().setRetained("k/1", 77);
    s->submit();  // no drain: closing the store commits what was submitted
  }
  auto s = openOk(o);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(sessionsOf(*s).at("keep").expiry_interval, 0xFFFFFFFFu);
  EXPECT_EQ(subscriptionsOf(*s).size(), 1u);
  EXPECT_EQ(seqs(queueOf(*s, "keep")), std::vector<uint64_t>{3});
  EXPECT_EQ(inboundOf(*s).size(), 1u);
  EXPECT_EQ(retainedOf(*s).at("k/1"), 77u);
  EXPECT_EQ(s->maxMessageId(), 77u);
  MessageRecord m;
  ASSERT_TRUE(s->readMessage(77, m));
  EXPECT_EQ(m.payload, "payload");
  // Reference counts survive too: both holders must let go.
  s->batch().deleteQueue("keep", 3, 77);
  s->drain();
  EXPECT_TRUE(hasMessage(*s, 77));
  s->batch().setRetained("k/1", 0);
  s->drain();
  EXPECT_FALSE(hasMessage(*s, 77));
}

TEST(PersistenceStore, ReadOnlyOpenOfMissingStoreFailsWithoutCreatingIt) {
  TempDir t;
  StoreOptions o = optionsFor(t.sub("missing"));
  o.read_only = true;
  std::string err;
  EXPECT_EQ(Store::open(o, err), nullptr);
  EXPECT_NE(err.find(t.sub("missing") + "/data.mdb"), std::string::npos) << err;
  EXPECT_NE(err.find("no Petrel data store"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(t.sub("missing")));
}

TEST(PersistenceStore, CommitCallbackTicketsIncrease) {
  TempDir t;
  auto s = openOk(optionsFor(t.path()));
  ASSERT_NE(s, nullptr);
  std::mutex mu;
  std::vector<std::pair<uint64_t, bool>> calls;
  s->setCommitCallback([&](uint64_t ticket, bool ok) {
    std::lock_guard<std::mutex> lk(mu);
    calls.emplace_back(ticket, ok);
  });
  const uint64_t first = s->ticket();
  s->submit();  // empty: no ticket used
  EXPECT_EQ(s->ticket(), first);
  std::vector<uint64_t> submitted;
  for (int i = 0; i < 20; ++i) {
    s->batch().putSession("c" + std::to_string(i), SessionRecord{});
    submitted.push_back(s->ticket());
    s->submit();
    EXPECT_EQ(s->ticket(), submitted.back() + 1);
    if (i % 5 == 4) s->drain();
  }
  s->drain();
  EXPECT_GE(s->committed(), submitted.back());
  s.reset();  // joins the writer: no callback can still be running
  ASSERT_FALSE(calls.empty());
  for (size_t i = 0; i < calls.size(); ++i) {
    EXPECT_TRUE(calls[i].second);
    if (i) {
      EXPECT_GT(calls[i].first, calls[i - 1].first) << "at call " << i;
    }
  }
  EXPECT_EQ(calls.back().first, submitted.back());
  EXPECT_GE(calls.front().first, submitted.front());
}

TEST(PersistenceStore, FailedCommitStoresNothingOfItsBatch) {
  TempDir t;
  StoreOptions o = optionsFor(t.path());
  o.map_size = 1ull << 20;  // 1 MiB
  auto s = openOk(o);
  ASSERT_NE(s, nullptr);
  std::atomic<int> failures{0};
  s->setCommitCallback([&](uint64_t, bool ok) {
    if (!ok) ++failures;
  });
  s->batch().putSession("before", SessionRecord{});
  s->drain();
  // 2 MiB cannot fit: the commit fails as a whole.
  s->batch().putSession("doomed", SessionRecord{});
  s->batch().putMessage(1, message("big", std::string(2 << 20, 'x')), 1);
  s->drain();
  // drain() returns once the commit is done; its callback may still be on
  // its way.
  for (int i = 0; i < 200 && failures.load() == 0; ++i) usleep(10 * 1000);
  EXPECT_EQ(failures.load(), 1);
  const auto sessions = sessionsOf(*s);
  EXPECT_EQ(sessions.count("doomed"), 0u);
  EXPECT_FALSE(hasMessage(*s, 1));
  // The store goes on working.
  s->batch().putSession("after", SessionRecord{});
  s->drain();
  EXPECT_EQ(failures.load(), 1);
  EXPECT_EQ(sessionsOf(*s).count("after"), 1u);
  EXPECT_EQ(sessionsOf(*s).count("before"), 1u);
}

TEST(PersistenceStore, PeriodicSyncModeCommitsToo) {
  TempDir t;
  StoreOptions o = optionsFor(t.path());
  o.sync = SyncMode::Periodic;
  o.sync_interval_ms = 20;
  {
    auto s = openOk(o);
    ASSERT_NE(s, nullptr);
    for (int i = 0; i < 5; ++i) {
      s->batch().putSession("p" + std::to_string(i), SessionRecord{});
      s->submit();
    }
    s->drain();
    EXPECT_EQ(s->stats().sessions, 5u);
  }
  auto s = openOk(o);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->stats().sessions, 5u);
}

// A long random run of the writes the broker makes (in the order it makes
// them: retained slot, queue entries, then the message record with its
// reference count; acknowledgements; session ends; stale deletes), checked
// against a plain model. Batches are submitted without waiting, so that
// they commit in groups of varying size, and drained now and then: whatever
// the grouping, the store must end up exactly as the model.
class StoreModel {
 public:
  std::map<std::string, std::map<uint64_t, uint64_t>> queues;  // cid -> seq -> msg
  std::map<uint64_t, int64_t> refs;                            // msg -> references
  std::map<std::string, uint64_t> retained;                    // topic -> msg
  std::map<std::string, std::set<uint16_t>> inbound;
  std::set<std::string> sessions;
  std::map<std::string, uint64_t> next_seq;
  uint64_t next_msg = 1;

  void deref(uint64_t id) {
    auto it = refs.find(id);
    if (it != refs.end() && --it->second <= 0) refs.erase(it);
  }
};

void expectSameAs(const Store& s, const StoreModel& m, const std::vector<std::string>& clients,
                  const std::string& when) {
  SCOPED_TRACE(when);
  for (const auto& cid : clients) {
    std::map<uint64_t, uint64_t> got;
    for (const auto& q : queueOf(s, cid)) got[q.seq] = q.msg_id;
    auto it = m.queues.find(cid);
    const std::map<uint64_t, uint64_t> want = it == m.queues.end() ? std::map<uint64_t, uint64_t>{} : it->second;
    EXPECT_EQ(got, want) << "queue of " << cid;
    std::set<uint16_t> in;
    for (const auto& [c, pid] : inboundOf(s))
      if (c == cid) in.insert(pid);
    auto ii = m.inbound.find(cid);
    EXPECT_EQ(in, ii == m.inbound.end() ? std::set<uint16_t>{} : ii->second) << "inbound of " << cid;
  }
  std::set<std::string> sess;
  for (const auto& [cid, r] : sessionsOf(s)) sess.insert(cid);
  EXPECT_EQ(sess, m.sessions);
  EXPECT_EQ(retainedOf(s), m.retained);
  for (uint64_t id = 1; id < m.next_msg; ++id)
    EXPECT_EQ(hasMessage(s, id), m.refs.count(id) == 1) << "message " << id;
  EXPECT_EQ(s.stats().messages, m.refs.size());
}

void randomRun(unsigned seed) {
  SCOPED_TRACE("seed " + std::to_string(seed));
  TempDir t;
  StoreOptions o = optionsFor(t.path());
  o.sync = SyncMode::Periodic;  // fast commits: more of them, in groups
  o.sync_interval_ms = 5;
  auto s = openOk(o);
  ASSERT_NE(s, nullptr);
  std::mt19937 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const std::vector<std::string> clients = {"a", "ab", "b", "c", "d", "e"};
  const std::vector<std::string> topics = {"t/1", "t/2", "t/3"};
  StoreModel m;
  for (int step = 0; step < 3000; ++step) {
    Batch& b = s->batch();
    const size_t what = pick(100);
    if (what < 40) {
      // A publish: maybe retained, queued for up to three sessions.
      const uint64_t id = m.next_msg++;
      uint32_t holders = 0;
      if (pick(4) == 0) {
        const std::string& topic = topics[pick(topics.size())];
        b.setRetained(topic, id);
        auto old = m.retained.find(topic);
        if (old != m.retained.end() && old->second != id) m.deref(old->second);
        m.retained[topic] = id;
        ++holders;
      }
      const size_t k = pick(4);
      std::set<std::string> chosen;
      for (size_t i = 0; i < k; ++i) chosen.insert(clients[pick(clients.size())]);
      for (const auto& cid : chosen) {
        if (!m.sessions.count(cid)) {
          b.putSession(cid, SessionRecord{});
          m.sessions.insert(cid);
        }
        const uint64_t seq = ++m.next_seq[cid];
        QueueRecord q = entry(seq, id);
        q.packet_id = pick(2) ? static_cast<uint16_t>(1 + pick(65535)) : 0;
        b.putQueue(cid, q);
        m.queues[cid][seq] = id;
        ++holders;
      }
      if (holders == 0) {
        --m.next_msg;  // the broker stores nothing for a message nobody keeps
        continue;
      }
      b.putMessage(id, message("t", "payload " + std::to_string(id)), holders);
      m.refs[id] = holders;
    } else if (what < 70) {
      // An acknowledgement (or an expiry): one entry leaves its queue.
      const std::string& cid = clients[pick(clients.size())];
      auto& q = m.queues[cid];
      if (q.empty()) continue;
      auto it = std::next(q.begin(), static_cast<long>(pick(std::min<size_t>(q.size(), 3))));
      b.deleteQueue(cid, it->first, it->second);
      m.deref(it->second);
      q.erase(it);
    } else if (what < 78) {
      // PUBREC received: the entry is rewritten as released.
      const std::string& cid = clients[pick(clients.size())];
      auto& q = m.queues[cid];
      if (q.empty()) continue;
      QueueRecord r = entry(q.begin()->first, q.begin()->second);
      r.qos = 2;
      r.released = true;
      r.packet_id = 7;
      b.putQueue(cid, r);
    } else if (what < 84) {
      // A session ends, with everything it held; sometimes an
      // acknowledgement for one of its entries follows (already gone).
      const std::string& cid = clients[pick(clients.size())];
      const auto q = m.queues[cid];
      b.deleteSession(cid);
      for (const auto& [seq, id] : q) m.deref(id);
      m.queues.erase(cid);
      m.inbound.erase(cid);
      m.sessions.erase(cid);
      if (!q.empty() && pick(2)) b.deleteQueue(cid, q.begin()->first, q.begin()->second);
    } else if (what < 88) {
      const std::string& topic = topics[pick(topics.size())];
      b.setRetained(topic, 0);
      auto old = m.retained.find(topic);
      if (old != m.retained.end()) {
        m.deref(old->second);
        m.retained.erase(old);
      }
    } else if (what < 96) {
      const std::string& cid = clients[pick(clients.size())];
      const auto pid = static_cast<uint16_t>(1 + pick(5));
      if (!m.sessions.count(cid)) {
        b.putSession(cid, SessionRecord{});
        m.sessions.insert(cid);
      }
      if (pick(2)) {
        b.putInboundQos2(cid, pid);
        m.inbound[cid].insert(pid);
      } else {
        b.deleteInboundQos2(cid, pid);
        m.inbound[cid].erase(pid);
      }
    } else {
      s->drain();
      expectSameAs(*s, m, clients, "step " + std::to_string(step));
      if (::testing::Test::HasFailure()) return;
      continue;
    }
    if (pick(3) == 0) s->submit();
  }
  s->drain();
  expectSameAs(*s, m, clients, "end");
  // And after reopening.
  s.reset();
  s = openOk(o);
  ASSERT_NE(s, nullptr);
  expectSameAs(*s, m, clients, "reopened");
}

TEST(PersistenceStore, RandomWritesMatchAModelWhateverTheGrouping) {
  for (unsigned seed : {1u, 2u, 3u}) {
    randomRun(seed);
    if (HasFailure()) return;
  }
}

// --- damaged and foreign stores ---

void expectRefused(const StoreOptions& o, const std::string& what) {
  std::string err;
  auto s = Store::open(o, err);
  EXPECT_EQ(s, nullptr);
  EXPECT_NE(err.find(o.dir + "/data.mdb"), std::string::npos) << err;
  EXPECT_NE(err.find(what), std::string::npos) << err;
}

void makeStoreWithData(const StoreOptions& o) {
  auto s = openOk(o);
  ASSERT_NE(s, nullptr);
  s->batch().putSession("someone", SessionRecord{});
  for (uint64_t i = 1; i <= 40; ++i) {
    s->batch().putMessage(i, message("t/" + std::to_string(i), std::string(3000, 'p')), 1);
    s->batch().setRetained("t/" + std::to_string(i), i);
  }
  s->drain();
}

TEST(PersistenceStore, NewerSchemaVersionIsRefused) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  rawPut(t.path(), "meta", "schema", u32le(Store::kSchemaVersion + 1));
  expectRefused(o, "schema version " + std::to_string(Store::kSchemaVersion + 1));
  std::string err;
  Store::open(o, err);
  EXPECT_NE(err.find("newer"), std::string::npos) << err;
}

// Schema 2 stores no reference count for a message with one holder; a
// count is written once a second holder takes it, and the message goes
// with its last holder either way.
TEST(PersistenceStore, SingleHolderMessageHasNoCountRecord) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  {
    auto s = openOk(o);
    ASSERT_NE(s, nullptr);
    s->batch().putMessage(1, message("t/1", "one holder"), 1);
    s->batch().putMessage(2, message("t/2", "two holders"), 2);
    s->drain();
  }
  EXPECT_FALSE(rawGet(t.path(), "refs", msgKey(1)).has_value());
  EXPECT_EQ(rawGet(t.path(), "refs", msgKey(2)), u32le(2));
  {
    auto s = openOk(o);
    ASSERT_NE(s, nullptr);
    s->batch().addRefs(1, 1);  // a second holder: 2
    s->drain();
    s->batch().addRefs(1, -1);  // 1
    s->batch().addRefs(2, -1);  // 1
    s->drain();
    EXPECT_TRUE(hasMessage(*s, 1));
    EXPECT_TRUE(hasMessage(*s, 2));
    s->batch().addRefs(1, -1);
    s->batch().addRefs(2, -1);
    s->drain();
    EXPECT_FALSE(hasMessage(*s, 1));
    EXPECT_FALSE(hasMessage(*s, 2));
    EXPECT_EQ(s->stats().messages, 0u);
  }
  EXPECT_FALSE(rawGet(t.path(), "refs", msgKey(1)).has_value());
  EXPECT_FALSE(rawGet(t.path(), "refs", msgKey(2)).has_value());
}

// A schema 1 store (a count record for every message, one holder too)
// opens, is marked schema 2 (so that a Petrel reading schema 1 alone
// refuses it from then on), and its counts still hold: a message with a
// stored count of 1 is kept while a second holder has it.
TEST(PersistenceStore, SchemaOneStoreIsUpgraded) {
  TempDir t;
  StoreOptions o = optionsFor(t.path());
  {
    auto s = openOk(o);
    ASSERT_NE(s, nullptr);
    s->batch().putMessage(7, message("t/7", "from schema 1"), 1);
    s->drain();
  }
  rawPut(t.path(), "refs", msgKey(7), u32le(1));  // as schema 1 wrote it
  rawPut(t.path(), "meta", "schema", u32le(1));
  {
    StoreOptions ro = o;
    ro.read_only = true;  // `petrel inspect` reads it as it is
    std::string err;
    auto s = Store::open(ro, err);
    ASSERT_NE(s, nullptr) << err;
    EXPECT_TRUE(hasMessage(*s, 7));
  }
  EXPECT_EQ(rawGet(t.path(), "meta", "schema"), u32le(1));
  std::string err, notice;
  auto s = Store::open(o, err, &notice);
  ASSERT_NE(s, nullptr) << err;
  EXPECT_NE(notice.find("schema version 1 upgraded to 2"), std::string::npos) << notice;
  s->batch().addRefs(7, 1);
  s->drain();
  s->batch().addRefs(7, -1);
  s->drain();
  EXPECT_TRUE(hasMessage(*s, 7)) << "one holder left";
  s->batch().addRefs(7, -1);
  s->drain();
  EXPECT_FALSE(hasMessage(*s, 7));
  s.reset();
  EXPECT_EQ(rawGet(t.path(), "meta", "schema"), u32le(2));
}

TEST(PersistenceStore, OlderSchemaVersionIsRefused) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  rawPut(t.path(), "meta", "schema", u32le(0));
  expectRefused(o, "schema version 0");
}

TEST(PersistenceStore, MalformedSchemaValueIsRefused) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  rawPut(t.path(), "meta", "schema", std::string("\x01\x00", 2));
  expectRefused(o, "schema version");
}

TEST(PersistenceStore, SchemaMismatchMovedAsideOnRequest) {
  TempDir t;
  StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  rawPut(t.path(), "meta", "schema", u32le(Store::kSchemaVersion + 1));
  const std::string before = readFile(t.sub("data.mdb"));
  o.on_corrupt = OnCorrupt::MoveAside;
  std::string err, notice;
  auto s = Store::open(o, err, &notice);
  ASSERT_NE(s, nullptr) << err;
  EXPECT_EQ(s->stats().sessions, 0u) << "starts empty";
  EXPECT_EQ(s->stats().retained, 0u);
  const auto aside = asideFiles(t.path());
  ASSERT_EQ(aside.size(), 1u);
  EXPECT_EQ(readFile(aside[0]), before);
  EXPECT_NE(notice.find("schema version"), std::string::npos) << notice;
  EXPECT_NE(notice.find(aside[0]), std::string::npos) << notice;
  // The new store works and reopens.
  s->batch().putSession("fresh", SessionRecord{});
  s->drain();
  s.reset();
  o.on_corrupt = OnCorrupt::Fail;
  auto again = openOk(o);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(sessionsOf(*again).count("fresh"), 1u);
}

TEST(PersistenceStore, GarbageFileIsRefused) {
  TempDir t;
  writeFile(t.sub("data.mdb"), randomBytes(64 * 1024, 7));
  const std::string before = readFile(t.sub("data.mdb"));
  expectRefused(optionsFor(t.path()), "not an LMDB file");
  EXPECT_EQ(readFile(t.sub("data.mdb")), before) << "a refused file is left alone";
}

TEST(PersistenceStore, GarbageFileMovedAsideOnRequest) {
  TempDir t;
  writeFile(t.sub("data.mdb"), randomBytes(64 * 1024, 8));
  StoreOptions o = optionsFor(t.path());
  o.on_corrupt = OnCorrupt::MoveAside;
  std::string err, notice;
  auto s = Store::open(o, err, &notice);
  ASSERT_NE(s, nullptr) << err;
  EXPECT_EQ(asideFiles(t.path()).size(), 1u);
  EXPECT_FALSE(notice.empty());
  s->batch().putSession("x", SessionRecord{});
  s->drain();
  EXPECT_EQ(s->stats().sessions, 1u);
}

TEST(PersistenceStore, TruncatedFilesAreRefused) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  const std::string path = t.sub("data.mdb");
  const auto size = fs::file_size(path);
  ASSERT_GE(size, 16u * 4096) << "the test store should span many pages";
  // Half of it (whole pages): the meta pages are intact, data pages missing.
  fs::resize_file(path, size / 2 / 4096 * 4096);
  expectRefused(o, "truncated");
  // Shorter than the two meta pages.
  fs::resize_file(path, 4096);
  expectRefused(o, "truncated");
  fs::resize_file(path, 100);
  expectRefused(o, "truncated");
}

// A file that ends before the last page its meta page counts, with
// nothing missing: what LMDB leaves when a transaction took pages from the
// end of the file and freed them again before its commit (it writes no such
// page), as a running broker's store, or a crashed one's, may be. Made here
// by raising the newest meta page's last page number by `pages` (LMDB's
// file format: after the 16-byte page header, magic and version (4 + 4),
// address and map size (8 + 8), two 48-byte database records, then the last
// page number and the transaction id, 8 bytes each). Returns the file size.
uint64_t endShortOfItsLastPage(const std::string& dir, uint64_t pages) {
  const std::string path = dir + "/data.mdb";
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  EXPECT_TRUE(f.good());
  constexpr std::streamoff kLastPage = 16 + 4 + 4 + 8 + 8 + 2 * 48;  // the transaction id follows
  uint64_t last[2], txn[2];
  for (int m = 0; m < 2; ++m) {
    f.seekg(m * 4096 + kLastPage);
    f.read(reinterpret_cast<char*>(&last[m]), 8);
    f.read(reinterpret_cast<char*>(&txn[m]), 8);
  }
  const int newest = txn[1] > txn[0] ? 1 : 0;
  const uint64_t size = fs::file_size(path);
  EXPECT_EQ((last[newest] + 1) * 4096, size) << "the file should end at its last page before";
  const uint64_t raised = last[newest] + pages;
  f.seekp(newest * 4096 + kLastPage);
  f.write(reinterpret_cast<const char*>(&raised), 8);
  f.close();
  MDB_env* env = nullptr;
  EXPECT_EQ(mdb_env_create(&env), 0);
  EXPECT_EQ(mdb_env_open(env, dir.c_str(), MDB_RDONLY, 0640), 0);
  MDB_envinfo info;
  mdb_env_info(env, &info);
  mdb_env_close(env);
  EXPECT_EQ(info.me_last_pgno, raised) << "LMDB should read the raised last page";
  return size;
}

TEST(PersistenceStore, FileEndingBeforeFreedPagesOpensReadOnlyAndWritable) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  const std::string path = t.sub("data.mdb");
  const uint64_t size = endShortOfItsLastPage(t.path(), 16);
  {
    // `petrel inspect` of such a store, a running broker's most often:
    // it opens, reads every record, and leaves the file as it was.
    StoreOptions ro = o;
    ro.read_only = true;
    std::string err, notice;
    auto s = Store::open(ro, err, &notice);
    ASSERT_NE(s, nullptr) << err;
    EXPECT_NE(notice.find("no data was missing"), std::string::npos) << notice;
    EXPECT_EQ(s->stats().messages, 40u);
    EXPECT_EQ(s->stats().sessions, 1u);
    EXPECT_TRUE(hasMessage(*s, 40));
  }
  EXPECT_EQ(fs::file_size(path), size);
  // Opened for writing, it is extended and works as any other.
  std::string err, notice;
  auto s = Store::open(o, err, &notice);
  ASSERT_NE(s, nullptr) << err;
  EXPECT_NE(notice.find("extended (no data was missing)"), std::string::npos) << notice;
  EXPECT_GT(fs::file_size(path), size);
  EXPECT_EQ(s->stats().messages, 40u);
  s->batch().putSession("another", SessionRecord{});
  s->drain();
  EXPECT_EQ(s->stats().sessions, 2u);
}

// Read-only, a truncated file is refused with the same message; the walk
// that meets the missing page faults a child process, not the caller.
TEST(PersistenceStore, TruncatedFileIsRefusedReadOnlyWithoutAFault) {
  TempDir t;
  StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  const std::string path = t.sub("data.mdb");
  const auto size = fs::file_size(path);
  fs::resize_file(path, size / 2 / 4096 * 4096);
  const auto cut = fs::file_size(path);
  o.read_only = true;
  expectRefused(o, "truncated");
  expectRefused(o, "a page past its end is in use");
  EXPECT_EQ(fs::file_size(path), cut);
}

// A reader that ends in the middle of its read (`petrel inspect` stopped
// with Ctrl-C, or killed) leaves its slot in LMDB's reader table, and LMDB
// keeps every page that slot's snapshot might still see: without clearing
// such slots, each message written and deleted afterwards would grow the
// file until the map is full. 64 MiB written and deleted here through a
// 64 MiB map.
TEST(PersistenceStore, ReaderSlotsOfProcessesThatEndedMidReadAreCleared) {
  TempDir t;
  StoreOptions o = optionsFor(t.path());
  o.reader_check_interval_ms = 20;
  makeStoreWithData(o);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t reader = fork();
  ASSERT_GE(reader, 0);
  if (reader == 0) {
    MDB_env* env = nullptr;
    MDB_txn* txn = nullptr;
    if (mdb_env_create(&env) || (mdb_env_set_maxdbs(env, 16), mdb_env_set_mapsize(env, 64ull << 20)) ||
        mdb_env_open(env, t.path().c_str(), MDB_RDONLY, 0640) || mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn))
      _exit(1);
    if (write(ready[1], "r", 1) != 1) _exit(1);
    for (;;) pause();  // in the middle of its read until killed
  }
  close(ready[1]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1) << "the reader did not start";
  close(ready[0]);
  std::string err, notice;
  auto s = Store::open(o, err, &notice);
  ASSERT_NE(s, nullptr) << err;
  kill(reader, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(reader, &status, 0), reader);
  const std::string big(64 * 1024, 'b');
  uint64_t id = 1000;
  for (int round = 0; round < 64; ++round) {
    for (int i = 0; i < 16; ++i) s->batch().putMessage(id + i, message("big/" + std::to_string(i), big), 1);
    s->drain();
    for (int i = 0; i < 16; ++i) s->batch().addRefs(id + i, -1);
    s->drain();
    id += 16;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(s->stats().messages, 40u);
  s->batch().putSession("after", SessionRecord{});
  s->drain();
  EXPECT_EQ(s->stats().sessions, 2u) << "the store still takes writes";
  EXPECT_LT(fs::file_size(t.sub("data.mdb")), 16u << 20);
}

TEST(PersistenceStore, ForeignLmdbFileIsRefused) {
  TempDir t;
  rawPut(t.path(), nullptr, "hello", "world");
  expectRefused(optionsFor(t.path()), "not a Petrel data store");
  // Refusing it changed nothing in it: no Petrel tables were created.
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_open(env, t.path().c_str(), MDB_RDONLY, 0640), 0);
  MDB_stat st;
  ASSERT_EQ(mdb_env_stat(env, &st), 0);
  EXPECT_EQ(st.ms_entries, 1u);
  mdb_env_close(env);
}

TEST(PersistenceStore, ForeignLmdbWithNamedDatabasesIsRefused) {
  TempDir t;
  rawPut(t.path(), "meta", "something", "else");
  expectRefused(optionsFor(t.path()), "not a Petrel data store");
}

TEST(PersistenceStore, CorruptSessionRecordIsRefusedNamingTheClient) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  rawPut(t.path(), "sessions", "mangled", std::string("\x01\x05", 2));
  expectRefused(o, "mangled");
}

TEST(PersistenceStore, CorruptRetainedRecordIsRefused) {
  TempDir t;
  const StoreOptions o = optionsFor(t.path());
  makeStoreWithData(o);
  rawPut(t.path(), "retained", "bad/topic", "123");
  expectRefused(o, "bad/topic");
}


// --- snapshots (the cluster's replica of a store) ---

// Everything a store holds, as comparable text.
std::string dumpOf(const Store& s) {
  std::string out, err;
  s.forEachSession([&](std::string_view cid, const SessionRecord& r) {
    out += "session " + std::string(cid) + " " + std::to_string(r.expiry_interval) + "\n";
  }, err);
  s.forEachSubscription([&](std::string_view cid, const SubscriptionRecord& r) {
    out += "sub " + std::string(cid) + " " + r.key + " " + std::to_string(r.qos) + "\n";
  }, err);
  s.forEachInboundQos2([&](std::string_view cid, uint16_t pid) {
    out += "inq2 " + std::string(cid) + " " + std::to_string(pid) + "\n";
  }, err);
  s.forEachRetained([&](std::string_view topic, uint64_t id) {
    out += "retained " + std::string(topic) + " " + std::to_string(id) + "\n";
  }, err);
  s.forEachQueueOwner("", [&](std::string_view cid) {
    s.readQueue(cid, 0, SIZE_MAX, [&](QueueRecord& q) {
      MessageRecord m;
      const bool has = s.readMessage(q.msg_id, m);
      out += "queue " + std::string(cid) + " " + std::to_string(q.seq) + " " + std::to_string(q.msg_id) + " " +
             std::to_string(q.packet_id) + " " + (has ? m.topic + ":" + m.payload : "missing") + "\n";
    });
  });
  const StoreStats st = s.stats();
  out += "messages " + std::to_string(st.messages) + " queued " + std::to_string(st.queued) + " delayed " +
         std::to_string(st.delayed) + "\n";
  return out;
}

// Copies `from` (as of a commit) into `to` through the snapshot's records.
uint64_t copyBySnapshot(Store& from, Store& to, uint64_t at_least, size_t piece = 4096) {
  auto snap = from.snapshot(at_least);
  EXPECT_NE(snap, nullptr);
  if (!snap) return 0;
  Batch b;
  while (snap->next(b, piece)) {
    to.batch().appendOps(b.ops());
    to.submit();
    b.clear();
  }
  EXPECT_EQ(snap->error(), "");
  to.drain();
  return snap->ticket();
}

void fill(Store& s, int sessions, int per_session) {
  uint64_t id = 1;
  for (int c = 0; c < sessions; ++c) {
    const std::string cid = "client-" + std::to_string(c);
    SessionRecord r;
    r.expiry_interval = 100 + c;
    s.batch().putSession(cid, r);
    SubscriptionRecord sub;
    sub.key = sub.filter = "t/" + std::to_string(c) + "/#";
    sub.qos = 1;
    s.batch().putSubscription(cid, sub);
    s.batch().putInboundQos2(cid, static_cast<uint16_t>(c + 1));
    for (int i = 0; i < per_session; ++i) {
      s.batch().putMessage(id, message("t/" + std::to_string(c), std::string(50, char('a' + i % 26))), 1);
      QueueRecord q = entry(i + 1, id);
      if (i == 0) q.packet_id = 7;
      s.batch().putQueue(cid, q);
      ++id;
    }
    s.submit();
  }
  // A message two sessions hold, and a retained one.
  s.batch().putMessage(id, message("shared", "both"), 3);
  s.batch().putQueue("client-0", entry(per_session + 1, id));
  s.batch().putQueue("client-1", entry(per_session + 1, id));
  s.batch().setRetained("shared", id);
  s.batch().putDelayed(DelayedKey{123456, id + 1}, message("later", "x"));
  s.drain();
}

TEST(PersistenceSnapshot, AnotherStoreBuiltFromASnapshotHoldsTheSame) {
  TempDir dir;
  auto a = openOk(optionsFor(dir.sub("a")));
  auto b = openOk(optionsFor(dir.sub("b")));
  fill(*a, 20, 300);
  // Pieces far smaller than the store: many records.
  copyBySnapshot(*a, *b, a->committed(), 2048);
  EXPECT_EQ(dumpOf(*a), dumpOf(*b));
  EXPECT_EQ(b->maxMessageId(), a->maxMessageId());
  // The copy's reference counts are the original's: the shared message
  // goes only with its last holder.
  for (Store* s : {a.get(), b.get()}) {
    s->batch().deleteQueue("client-0", 301, 6001);
    s->batch().deleteQueue("client-1", 301, 6001);
    s->batch().setRetained("shared", 0);
    s->drain();
    MessageRecord m;
    EXPECT_FALSE(s->readMessage(6001, m));
  }
  EXPECT_EQ(dumpOf(*a), dumpOf(*b));
}

TEST(PersistenceSnapshot, ASnapshotPlusTheBatchesAfterItIsTheStore) {
  // The replica's contract: the snapshot holds every batch up to ticket(),
  // none after it, while commits go on during the read.
  TempDir dir;
  auto a = openOk(optionsFor(dir.sub("a")));
  auto b = openOk(optionsFor(dir.sub("b")));
  fill(*a, 5, 100);
  std::vector<std::pair<uint64_t, std::string>> log;  // every batch after the fill
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::thread writer([&] {
    uint64_t id = 100000;
    for (int i = 0; i < 2000 && !stop; ++i) {
      std::lock_guard<std::mutex> lock(mu);
      const std::string cid = "client-" + std::to_string(i % 5);
      a->batch().putMessage(id, message("t/x", "p" + std::to_string(i)), 1);
      a->batch().putQueue(cid, entry(1000 + i, id));
      // Entries of the fill go too, each once.
      const int k = i / 3, c = k % 5, seq = k / 5 + 1;
      if (i % 3 == 0 && seq <= 100)
        a->batch().deleteQueue("client-" + std::to_string(c), seq, uint64_t(c) * 100 + seq);
      ++id;
      log.emplace_back(a->ticket(), a->batch().ops());
      a->submit();
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  uint64_t t = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    t = a->committed();
  }
  const uint64_t snap_ticket = copyBySnapshot(*a, *b, t);
  EXPECT_GE(snap_ticket, t);
  writer.join();
  a->drain();
  for (auto& [ticket, ops] : log) {
    if (ticket <= snap_ticket) continue;
    b->batch().appendOps(ops);
    b->submit();
  }
  b->drain();
  EXPECT_EQ(dumpOf(*a), dumpOf(*b));
}

TEST(PersistenceSnapshot, WaitsForTheCommitAskedFor) {
  TempDir dir;
  auto a = openOk(optionsFor(dir.sub("a")));
  a->batch().putMessage(1, message("t", "x"), 1);
  a->batch().putQueue("c", entry(1, 1));
  const uint64_t ticket = a->awaitedTicket();
  a->submit();
  auto snap = a->snapshot(ticket);
  ASSERT_NE(snap, nullptr);
  EXPECT_GE(snap->ticket(), ticket);
  Batch out;
  std::string all;
  while (snap->next(out, 1 << 20)) {
    all += out.ops();
    out.clear();
  }
  // The queue entry is in it.
  TempDir other;
  auto b = openOk(optionsFor(other.sub("b")));
  b->batch().appendOps(all);
  b->drain();
  EXPECT_EQ(dumpOf(*a), dumpOf(*b));
}

}  // namespace
}  // namespace petrel::persistence
