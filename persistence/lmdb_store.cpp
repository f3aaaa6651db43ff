#include "persistence/lmdb_store.h"

#include <lmdb.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <memory_resource>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "persistence/codec.h"

namespace petrel::persistence {

namespace {

MDB_val val(std::string_view s) {
  return MDB_val{s.size(), const_cast<char*>(s.data())};
}
std::string_view view(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// RAII transaction: aborted when it goes out of scope uncommitted, so no
// error path can leave one open (a write transaction left open would block
// every later commit).
class Txn {
 public:
  explicit Txn(MDB_env* env, unsigned flags = MDB_RDONLY) {
    rc_ = mdb_txn_begin(env, nullptr, flags, &txn_);
    unsigned env_flags = 0;
    if (rc_ == MDB_MAP_RESIZED && mdb_env_get_flags(env, &env_flags) == 0 && (env_flags & MDB_RDONLY)) {
      // A reader of a live broker's store (petrel inspect): the broker's
      // map is larger than the one this process opened with. LMDB's
      // remedy: take the size the file now has, and begin again (safe
      // here: a read-only store has no other transaction open).
      mdb_env_set_mapsize(env, 0);
      rc_ = mdb_txn_begin(env, nullptr, flags, &txn_);
    }
  }
  ~Txn() {
    if (txn_) mdb_txn_abort(txn_);
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  MDB_txn* get() const { return txn_; }
  int rc() const { return rc_; }
  int commit() {
    const int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;  // freed by LMDB whatever the outcome
    return rc;
  }

 private:
  MDB_txn* txn_ = nullptr;
  int rc_;
};

// RAII cursor.
class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) { rc_ = mdb_cursor_open(txn, dbi, &c_); }
  ~Cursor() {
    if (c_) mdb_cursor_close(c_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  MDB_cursor* get() const { return c_; }
  int rc() const { return rc_; }

 private:
  MDB_cursor* c_ = nullptr;
  int rc_;
};

// A cursor for deletes that come in increasing key order (a queue drained
// from its head, and the messages it held, whose ids grow with it). After
// a delete LMDB leaves the cursor on the next key; when that is the next
// key to go, it is deleted where it stands instead of searched for from the
// root. The key is always compared, so a delete out of order only costs
// the search.
class RunCursor {
 public:
  RunCursor(MDB_txn* txn, MDB_dbi dbi) : c_(txn, dbi) {}
  int rc() const { return c_.rc(); }
  // Stands on `key` (its value in `v`); MDB_NOTFOUND if there is none.
  int seek(MDB_val key, MDB_val& v) {
    if (on_next_) {
      on_next_ = false;
      MDB_val k;
      if (mdb_cursor_get(c_.get(), &k, &v, MDB_GET_CURRENT) == 0 && k.mv_size == key.mv_size &&
          std::memcmp(k.mv_data, key.mv_data, key.mv_size) == 0)
        return 0;
    }
    return mdb_cursor_get(c_.get(), &key, &v, MDB_SET_KEY);
  }
  // Deletes the entry seek() found.
  int del() {
    const int rc = mdb_cursor_del(c_.get(), 0);
    on_next_ = rc == 0;
    return rc;
  }
  // Replaces the value of the entry seek() found.
  int replace(MDB_val key, MDB_val v) { return mdb_cursor_put(c_.get(), &key, &v, MDB_CURRENT); }
  // Puts an entry (new or replacing). Through the cursor rather than
  // mdb_put: LMDB looks for the place on the cursor's page first, so a
  // put just after the last one (message ids, a queue's next entry) does
  // not search from the root.
  int put(MDB_val key, MDB_val v, bool append = false) {
    on_next_ = false;
    if (append) {
      const int rc = mdb_cursor_put(c_.get(), &key, &v, MDB_APPEND);
      if (rc != MDB_KEYEXIST) return rc;
    }
    return mdb_cursor_put(c_.get(), &key, &v, 0);
  }
  // Another write went to this table: the position is not trusted.
  void reset() { on_next_ = false; }

 private:
  Cursor c_;
  bool on_next_ = false;
};

// The run cursors of one group commit, on the tables a queue entry's
// delete touches.
struct RunCursors {
  RunCursors(MDB_txn* txn, MDB_dbi queue, MDB_dbi refs, MDB_dbi messages)
      : queue(txn, queue), refs(txn, refs), messages(txn, messages) {}
  int rc() const { return queue.rc() ? queue.rc() : refs.rc() ? refs.rc() : messages.rc(); }
  void reset() {
    queue.reset();
    refs.reset();
    messages.reset();
  }
  RunCursor queue, refs, messages;
};

// A message id's key on the stack: no allocation per op on the writer thread.
struct U64Key {
  explicit U64Key(uint64_t v) { putU64Key(b, v); }
  MDB_val val() { return MDB_val{8, b}; }
  char b[8];
};

bool hasPrefix(std::string_view k, std::string_view prefix) {
  return k.size() >= prefix.size() && k.compare(0, prefix.size(), prefix) == 0;
}

// Splits "<client id>\0<rest>".
bool splitClientKey(std::string_view k, std::string_view& cid, std::string_view& rest) {
  const size_t z = k.find('\0');
  if (z == std::string_view::npos) return false;
  cid = k.substr(0, z);
  rest = k.substr(z + 1);
  return true;
}

std::string errText(int rc) { return mdb_strerror(rc); }

// How long the writer may hold back a commit of deletions nobody waits
// for (Batch::deferrable), to commit them with what follows.
constexpr int kDeferDeletesMs = 5;

// A commit slower than this is reported: whatever waits for it (a
// publisher's PUBACK, a QoS 2 delivery's PUBLISH or PUBREL) waited that
// long, and the cause is the disk, not the broker. At most one line per
// kSlowCommitReportS seconds, counting the slow commits in between.
constexpr auto kSlowCommit = std::chrono::milliseconds(500);
constexpr auto kSlowCommitReportS = std::chrono::seconds(10);

// Meta key: the highest message id among delayed publishes.
constexpr std::string_view kDelayedMaxId = "delayed_max_id";

}  // namespace

struct LmdbStore::Impl {
  MDB_env* env = nullptr;
  MDB_dbi meta = 0, sessions = 0, subs = 0, queue = 0, inq2 = 0, messages = 0, refs = 0, retained = 0;
  // Delayed publishes; absent (has_delayed false) from a store written
  // before they existed and opened read-only.
  MDB_dbi delayed = 0;
  bool has_delayed = false;

  std::thread writer;
  std::mutex mu;
  std::condition_variable cv;        // writer waits for work
  std::condition_variable drained;   // drain() waits for commits
  std::deque<std::pair<uint64_t, std::unique_ptr<Batch>>> pending;
  std::deque<std::unique_ptr<Batch>> spare;  // recycled batches
  bool stop = false;
  std::atomic<uint64_t> committed{0};
  uint64_t submitted = 0;
  // The highest ticket whose commit may not be deferred (a batch that is
  // not deferrable(), or everything up to drain()).
  uint64_t hurry = 0;
  uint64_t callback_done = 0;  // highest ticket whose callback has returned
  std::atomic<uint64_t> used_bytes{0};
  std::function<void(uint64_t, bool)> on_commit;

  ~Impl() {
    if (env) mdb_env_close(env);
  }

  // Applies one op log inside `txn`. Returns an LMDB error code or 0.
  int apply(MDB_txn* txn, std::string_view ops);
  // Applies every batch of a group commit, leaving out the writes that
  // cancel out within the group (see applyGroup in store.cpp).
  int applyGroup(MDB_txn* txn, const std::deque<std::pair<uint64_t, std::unique_ptr<Batch>>>& work);
  int addRefs(MDB_txn* txn, uint64_t id, int32_t delta);
  // Inside applyGroup: the cursors deletes in key order go through.
  RunCursors* run = nullptr;
  // The key of a queue entry, rebuilt in place for each op.
  std::string seq_key;
  // applyGroup's bookkeeping (the group's ops, what cancels out) comes from
  // an arena over this buffer, kept from group to group: no heap allocation
  // per message. A larger group takes the rest from the heap, given back
  // when the group is applied.
  std::vector<std::byte> group_scratch = std::vector<std::byte>(512 * 1024);
  int deletePrefix(MDB_txn* txn, MDB_dbi dbi, std::string_view prefix, bool deref_queue);
  // The handle of a table named in a snapshot; false for none.
  bool dbiOf(Table t, MDB_dbi& out) const {
    switch (t) {
      case Table::Meta: out = meta; return true;
      case Table::Sessions: out = sessions; return true;
      case Table::Subscriptions: out = subs; return true;
      case Table::Queue: out = queue; return true;
      case Table::InboundQos2: out = inq2; return true;
      case Table::Messages: out = messages; return true;
      case Table::Refs: out = refs; return true;
      case Table::Retained: out = retained; return true;
      case Table::Delayed: out = delayed; return has_delayed;
    }
    return false;
  }
  // A snapshot asked for (snapshot()): the writer begins its read
  // transaction between two commits, once `snap_at_least` has committed.
  bool snap_wanted = false;
  uint64_t snap_at_least = 0;
  MDB_txn* snap_txn = nullptr;
  uint64_t snap_ticket = 0;
  int snap_rc = 0;
  bool snapReady() const { return snap_wanted && callback_done >= snap_at_least; }
  void beginSnapshot() {
    snap_rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &snap_txn);
    if (snap_rc) snap_txn = nullptr;
    snap_ticket = callback_done;
    snap_wanted = false;
  }
  // Bytes in the pages our tables use now. Unlike the file's high-water
  // mark this goes down again as entries are deleted (freed pages are
  // reused), so it is what the size cap compares.
  uint64_t usedBytes(MDB_txn* txn) const {
    uint64_t pages = 0;
    unsigned psize = 4096;
    for (MDB_dbi d : {meta, sessions, subs, queue, inq2, messages, refs, retained, delayed}) {
      if (d == delayed && !has_delayed) continue;
      MDB_stat st;
      if (mdb_stat(txn, d, &st) != 0) continue;
      pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
      psize = st.ms_psize;
    }
    return pages * psize;
  }
};

int LmdbStore::Impl::addRefs(MDB_txn* txn, uint64_t id, int32_t delta) {
  U64Key k(id);
  MDB_val key = k.val(), v;
  // No count stored means one holder (PutMessage leaves the count of a
  // message with a single holder out: the common durable QoS 1 case then
  // costs one record put and one deleted, not two each).
  int64_t n = 1;
  int rc = run ? run->refs.seek(key, v) : mdb_get(txn, refs, &key, &v);
  const bool found = rc == 0;
  if (found && v.mv_size == 4) {
    uint32_t cur;
    std::memcpy(&cur, v.mv_data, 4);
    n = cur;
  } else if (rc != 0 && rc != MDB_NOTFOUND) {
    return rc;
  }
  n += delta;
  if (n <= 0) {
    if (run) {
      // The last reference went: the count and the message go, in id
      // order when a queue drains.
      rc = found ? run->refs.del() : 0;
      if (rc) return rc;
      rc = run->messages.seek(key, v);
      if (rc == 0) rc = run->messages.del();
      return rc == MDB_NOTFOUND ? 0 : rc;
    }
    rc = mdb_del(txn, refs, &key, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return rc;
    rc = mdb_del(txn, messages, &key, nullptr);
    return rc == MDB_NOTFOUND ? 0 : rc;
  }
  uint32_t out = static_cast<uint32_t>(n);
  MDB_val nv{4, &out};
  if (run && found && v.mv_size == 4) return run->refs.replace(key, nv);
  return mdb_put(txn, refs, &key, &nv, 0);
}

int LmdbStore::Impl::deletePrefix(MDB_txn* txn, MDB_dbi dbi, std::string_view prefix, bool deref_queue) {
  Cursor c(txn, dbi);
  if (c.rc()) return c.rc();
  MDB_val k = val(prefix), v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
  while (rc == 0 && hasPrefix(view(k), prefix)) {
    if (deref_queue && v.mv_size >= 8) {
      uint64_t msg_id;
      std::memcpy(&msg_id, v.mv_data, 8);
      int r = addRefs(txn, msg_id, -1);
      if (r) return r;
    }
    rc = mdb_cursor_del(c.get(), 0);
    if (rc) return rc;
    rc = mdb_cursor_get(c.get(), &k, &v, MDB_GET_CURRENT);
    if (rc == EINVAL) rc = MDB_NOTFOUND;  // deleted the last item
  }
  return rc == MDB_NOTFOUND ? 0 : rc;
}

int LmdbStore::Impl::apply(MDB_txn* txn, std::string_view ops) {
  In in{ops};
  while (!in.atEnd() && in.ok) {
    const auto op = static_cast<Batch::Op>(in.u8());
    int rc = 0;
    // Any other write may move the entries the run cursors stand on.
    if (run && op != Batch::Op::DeleteQueue) run->reset();
    switch (op) {
      case Batch::Op::PutMessage: {
        const uint64_t id = in.fixed<uint64_t>();
        uint32_t n = in.fixed<uint32_t>();
        std::string_view rec = in.view();
        U64Key k(id);
        MDB_val key = k.val(), v = val(rec), nv{4, &n};
        rc = run ? run->messages.put(key, v, true) : mdb_put(txn, messages, &key, &v, 0);
        if (!rc && n != 1) rc = run ? run->refs.put(key, nv) : mdb_put(txn, refs, &key, &nv, 0);
        break;
      }
      case Batch::Op::AddRefs: {
        const uint64_t id = in.fixed<uint64_t>();
        const auto d = static_cast<int32_t>(in.fixed<uint32_t>());
        rc = addRefs(txn, id, d);
        break;
      }
      case Batch::Op::PutSession: {
        std::string_view cid = in.view(), rec = in.view();
        MDB_val key = val(cid), v = val(rec);
        rc = mdb_put(txn, sessions, &key, &v, 0);
        break;
      }
      case Batch::Op::DeleteSession: {
        std::string_view cid = in.view();
        MDB_val key = val(cid);
        rc = mdb_del(txn, sessions, &key, nullptr);
        if (rc == MDB_NOTFOUND) rc = 0;
        const std::string prefix = clientKey(cid, "");
        if (!rc) rc = deletePrefix(txn, subs, prefix, false);
        if (!rc) rc = deletePrefix(txn, queue, prefix, true);
        if (!rc) rc = deletePrefix(txn, inq2, prefix, false);
        break;
      }
      case Batch::Op::PutSubscription: {
        std::string_view cid = in.view(), key = in.view(), rec = in.view();
        const std::string k = clientKey(cid, key);
        MDB_val mk = val(k), v = val(rec);
        rc = mdb_put(txn, subs, &mk, &v, 0);
        break;
      }
      case Batch::Op::DeleteSubscription: {
        std::string_view cid = in.view(), key = in.view();
        const std::string k = clientKey(cid, key);
        MDB_val mk = val(k);
        rc = mdb_del(txn, subs, &mk, nullptr);
        if (rc == MDB_NOTFOUND) rc = 0;
        break;
      }
      case Batch::Op::PutQueue: {
        std::string_view cid = in.view();
        const uint64_t seq = in.fixed<uint64_t>();
        std::string_view rec = in.view();
        seqKeyInto(seq_key, cid, seq);
        MDB_val mk = val(seq_key), v = val(rec);
        rc = run ? run->queue.put(mk, v) : mdb_put(txn, queue, &mk, &v, 0);
        break;
      }
      case Batch::Op::DeleteQueue: {
        std::string_view cid = in.view();
        const uint64_t seq = in.fixed<uint64_t>();
        const uint64_t msg_id = in.fixed<uint64_t>();
        seqKeyInto(seq_key, cid, seq);
        MDB_val mk = val(seq_key), v;
        if (run) {
          rc = run->queue.seek(mk, v);
          if (rc == 0) rc = run->queue.del();
        } else {
          rc = mdb_del(txn, queue, &mk, nullptr);
        }
        if (rc == 0) rc = addRefs(txn, msg_id, -1);
        else if (rc == MDB_NOTFOUND) rc = 0;  // already gone with its session
        break;
      }
      case Batch::Op::PutInboundQos2:
      case Batch::Op::DeleteInboundQos2: {
        std::string_view cid = in.view();
        const uint16_t pid = in.fixed<uint16_t>();
        const std::string k = clientKey(cid, std::string_view(reinterpret_cast<const char*>(&pid), 2));
        MDB_val mk = val(k), v{0, nullptr};
        if (op == Batch::Op::PutInboundQos2) {
          rc = mdb_put(txn, inq2, &mk, &v, 0);
        } else {
          rc = mdb_del(txn, inq2, &mk, nullptr);
          if (rc == MDB_NOTFOUND) rc = 0;
        }
        break;
      }
      case Batch::Op::SetRetained: {
        std::string_view topic = in.view();
        const uint64_t id = in.fixed<uint64_t>();
        MDB_val mk = val(topic), v;
        rc = mdb_get(txn, retained, &mk, &v);
        if (rc == 0 && v.mv_size == 8) {
          uint64_t old;
          std::memcpy(&old, v.mv_data, 8);
          if (old != id) rc = addRefs(txn, old, -1);
        } else if (rc == MDB_NOTFOUND) {
          rc = 0;
        }
        if (rc) break;
        if (id) {
          MDB_val nv{8, const_cast<uint64_t*>(&id)};
          rc = mdb_put(txn, retained, &mk, &nv, 0);
        } else {
          rc = mdb_del(txn, retained, &mk, nullptr);
          if (rc == MDB_NOTFOUND) rc = 0;
        }
        break;
      }
      case Batch::Op::PutDelayed: {
        DelayedKey dk;
        dk.due_ms = in.fixed<int64_t>();
        dk.msg_id = in.fixed<uint64_t>();
        std::string_view rec = in.view();
        const std::string k = delayedKey(dk);
        MDB_val mk = val(k), v = val(rec);
        rc = mdb_put(txn, delayed, &mk, &v, 0);
        // The highest id of a delayed message, which has no message
        // record: ids are never reused across a restart (maxMessageId).
        MDB_val idk = val(kDelayedMaxId), cur;
        uint64_t top = 0;
        if (!rc) {
          const int g = mdb_get(txn, meta, &idk, &cur);
          if (g == 0 && cur.mv_size == 8) std::memcpy(&top, cur.mv_data, 8);
          else if (g != 0 && g != MDB_NOTFOUND) rc = g;
        }
        if (!rc && dk.msg_id > top) {
          MDB_val nv{8, &dk.msg_id};
          rc = mdb_put(txn, meta, &idk, &nv, 0);
        }
        break;
      }
      case Batch::Op::DeleteDelayed: {
        DelayedKey dk;
        dk.due_ms = in.fixed<int64_t>();
        dk.msg_id = in.fixed<uint64_t>();
        const std::string k = delayedKey(dk);
        MDB_val mk = val(k);
        rc = mdb_del(txn, delayed, &mk, nullptr);
        if (rc == MDB_NOTFOUND) rc = 0;  // its batch failed to commit
        break;
      }
      case Batch::Op::PutRaw: {
        const auto table = static_cast<Table>(in.u8());
        std::string_view k = in.view(), v = in.view();
        MDB_dbi d = 0;
        if (!dbiOf(table, d)) return MDB_CORRUPTED;
        // The schema version is this store's own.
        if (table == Table::Meta && k == "schema") break;
        MDB_val key = val(k), value = val(v);
        rc = mdb_put(txn, d, &key, &value, 0);
        break;
      }
      default:
        return MDB_CORRUPTED;  // an op log we did not write
    }
    if (rc) return rc;
  }
  return in.ok ? 0 : MDB_CORRUPTED;
}

namespace {

// A message put in a group, as the group's ops leave it (applyGroup).
struct GroupMsg {
  size_t put = SIZE_MAX;      // index of its PutMessage in this group
  int64_t refs = 0;
  bool all_cancelled = true;  // every delete of an entry of it took back a put of this group
  bool cancelled = false;     // nothing of it reaches the disk
};

// One op of a batch, located in its op log.
struct ParsedOp {
  Batch::Op op;
  std::string_view bytes;  // the op code and its operands
  std::string_view cid;    // queue ops and DeleteSession
  uint64_t seq = 0;        // queue ops
  uint64_t msg = 0;        // PutMessage, AddRefs, DeleteQueue
  int64_t refs = 0;        // PutMessage: initial count; AddRefs: delta
  bool dead = false;       // cancelled within the group
  bool deref_only = false; // DeleteQueue whose entry never reached the disk
  GroupMsg* touches = nullptr;  // AddRefs, DeleteQueue: of a message put before it in the group
};

// Splits an op log into ops; false on a log we did not write.
bool splitOps(std::string_view log, std::pmr::vector<ParsedOp>& out) {
  In in{log};
  while (!in.atEnd()) {
    const size_t start = in.p;
    ParsedOp o;
    o.op = static_cast<Batch::Op>(in.u8());
    switch (o.op) {
      case Batch::Op::PutMessage:
        o.msg = in.fixed<uint64_t>();
        o.refs = in.fixed<uint32_t>();
        in.view();
        break;
      case Batch::Op::AddRefs:
        o.msg = in.fixed<uint64_t>();
        o.refs = static_cast<int32_t>(in.fixed<uint32_t>());
        break;
      case Batch::Op::PutSession: in.view(); in.view(); break;
      case Batch::Op::DeleteSession: o.cid = in.view(); break;
      case Batch::Op::PutSubscription: in.view(); in.view(); in.view(); break;
      case Batch::Op::DeleteSubscription: in.view(); in.view(); break;
      case Batch::Op::PutQueue:
        o.cid = in.view();
        o.seq = in.fixed<uint64_t>();
        in.view();
        break;
      case Batch::Op::DeleteQueue:
        o.cid = in.view();
        o.seq = in.fixed<uint64_t>();
        o.msg = in.fixed<uint64_t>();
        break;
      case Batch::Op::PutInboundQos2:
      case Batch::Op::DeleteInboundQos2: in.view(); in.fixed<uint16_t>(); break;
      case Batch::Op::SetRetained: in.view(); in.fixed<uint64_t>(); break;
      case Batch::Op::PutDelayed: in.fixed<int64_t>(); in.fixed<uint64_t>(); in.view(); break;
      case Batch::Op::DeleteDelayed: in.fixed<int64_t>(); in.fixed<uint64_t>(); break;
      case Batch::Op::PutRaw: in.u8(); in.view(); in.view(); break;
      default: return false;
    }
    if (!in.ok) return false;
    o.bytes = log.substr(start, in.p - start);
    out.push_back(o);
  }
  return true;
}

}  // namespace

// Group commit with cancellation: a message that is queued for an online
// durable subscriber and acknowledged by it before the commit (the common
// case: the commit takes a disk flush, the acknowledgement a round trip)
// is put and deleted in the same transaction. Those pairs are left out:
// the queue entry, its message record and reference count never touch
// the B-trees. What the group commits is the same end state.
int LmdbStore::Impl::applyGroup(MDB_txn* txn,
                            const std::deque<std::pair<uint64_t, std::unique_ptr<Batch>>>& work) {
  std::pmr::monotonic_buffer_resource arena(group_scratch.data(), group_scratch.size());
  std::pmr::vector<ParsedOp> ops(&arena);
  for (const auto& [t, b] : work)
    if (!splitOps(b->ops(), ops)) return MDB_CORRUPTED;
  // Queue entries by (client, seq), without building a key string: the
  // views point into the batches, which outlive this call.
  struct EntryKey {
    std::string_view cid;
    uint64_t seq;
    bool operator==(const EntryKey& o) const { return seq == o.seq && cid == o.cid; }
  };
  struct EntryHash {
    size_t operator()(const EntryKey& k) const {
      return std::hash<std::string_view>()(k.cid) ^ (k.seq * 0x9E3779B97F4A7C15ull);
    }
  };
  size_t message_puts = 0, queue_puts = 0;
  for (const ParsedOp& o : ops) {
    message_puts += o.op == Batch::Op::PutMessage;
    queue_puts += o.op == Batch::Op::PutQueue;
  }
  std::pmr::unordered_map<EntryKey, size_t, EntryHash> last_put(&arena);  // PutQueue index
  last_put.reserve(queue_puts);
  // Messages put in this group; only they can cancel out within it (ids are
  // never reused, so a message put in an earlier group is on disk). Their
  // nodes stay where they are, so ops point at them.
  std::pmr::unordered_map<uint64_t, GroupMsg> msgs(&arena);
  msgs.reserve(message_puts);
  for (size_t i = 0; i < ops.size(); ++i) {
    ParsedOp& o = ops[i];
    switch (o.op) {
      case Batch::Op::PutMessage: {
        GroupMsg& m = msgs[o.msg];
        m.put = i;
        m.refs += o.refs;
        break;
      }
      case Batch::Op::AddRefs: {
        auto it = msgs.find(o.msg);
        if (it == msgs.end()) break;
        it->second.refs += o.refs;
        o.touches = &it->second;
        break;
      }
      case Batch::Op::PutQueue: {
        auto [it, added] = last_put.try_emplace(EntryKey{o.cid, o.seq}, i);
        if (!added) {
          ops[it->second].dead = true;  // superseded
          it->second = i;
        }
        break;
      }
      case Batch::Op::DeleteQueue: {
        // Only an entry created in this group can vanish with it: its
        // message was created in the same batch (ids are never reused), so
        // a PutMessage here proves nothing of it is on disk yet. A put that
        // merely rewrote a committed entry (packet id, PUBREC) is applied.
        auto created = msgs.find(o.msg);
        if (created == msgs.end()) break;
        auto it = last_put.find(EntryKey{o.cid, o.seq});
        if (it != last_put.end() && created->second.put != SIZE_MAX) {
          ops[it->second].dead = true;
          last_put.erase(it);
          o.deref_only = true;
        }
        created->second.refs -= 1;
        o.touches = &created->second;
        break;
      }
      case Batch::Op::DeleteSession: {
        // Puts before it are applied and then removed with the session.
        for (auto it = last_put.begin(); it != last_put.end();)
          it = it->first.cid == o.cid ? last_put.erase(it) : std::next(it);
        break;
      }
      default:
        break;
    }
  }
  // A message put in this group whose every reference was dropped in it,
  // each queue entry of it with the put of that entry.
  for (const ParsedOp& o : ops)
    if (o.touches && o.op == Batch::Op::DeleteQueue && !o.deref_only) o.touches->all_cancelled = false;
  for (auto& [id, m] : msgs) {
    if (m.put == SIZE_MAX || m.refs != 0 || !m.all_cancelled) continue;
    ops[m.put].dead = true;
    m.cancelled = true;
  }
  for (ParsedOp& o : ops)
    if (o.touches && o.touches->cancelled) o.dead = true;
  RunCursors cursors(txn, queue, refs, messages);
  if (cursors.rc()) return cursors.rc();
  run = &cursors;
  int rc = 0;
  for (const ParsedOp& o : ops) {
    if (o.dead) continue;
    rc = o.deref_only ? addRefs(txn, o.msg, -1) : apply(txn, o.bytes);
    if (rc) break;
  }
  run = nullptr;  // the cursors close here, before the commit
  return rc;
}

LmdbStore::LmdbStore(const StoreOptions& o) : options_(o), impl_(std::make_unique<Impl>()) {}

LmdbStore::~LmdbStore() {
  if (impl_->writer.joinable()) {
    {
      std::lock_guard<std::mutex> lk(impl_->mu);
      impl_->stop = true;
    }
    impl_->cv.notify_all();
    impl_->writer.join();
  }
  if (impl_->env && !options_.read_only) mdb_env_sync(impl_->env, 1);
}

namespace {

std::string timestamp() {
  char buf[32];
  time_t t = time(nullptr);
  tm tmv;
  gmtime_r(&t, &tmv);
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tmv);
  return buf;
}

bool fileSize(const std::string& path, uint64_t& size) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return false;
  size = static_cast<uint64_t>(st.st_size);
  return true;
}

}  // namespace

bool LmdbStore::openEnv(std::string& error) {
  const std::string& dir = options_.dir;
  const std::string data = dir + "/data.mdb";
  if (!options_.read_only && mkdir(dir.c_str(), 0750) != 0 && errno != EEXIST) {
    error = dir + ": cannot create the data directory: " + strerror(errno);
    return false;
  }
  uint64_t size = 0;
  const bool exists = fileSize(data, size);
  if (options_.read_only && !exists) {
    error = data + ": no Petrel data store here";
    return false;
  }
  if (exists && size > 0 && size < 2 * 4096) {
    error = data + ": truncated (" + std::to_string(size) + " bytes, too short for an LMDB file)";
    return false;
  }
  MDB_env* env;
  int rc = mdb_env_create(&env);
  if (rc) {
    error = "LMDB: " + errText(rc);
    return false;
  }
  impl_->env = env;
  mdb_env_set_maxdbs(env, 16);
  uint64_t map = options_.map_size;
  if (exists && size > map) map = size;  // never smaller than the file
  mdb_env_set_mapsize(env, map);
  unsigned flags = MDB_NOTLS;
  if (options_.read_only) flags |= MDB_RDONLY;
  if (options_.sync == SyncMode::Periodic) flags |= MDB_NOSYNC;
  rc = mdb_env_open(env, dir.c_str(), flags, 0640);
  if (rc) {
    error = data + ": cannot open: " + errText(rc);
    return false;
  }
  // A file cut short would fault when a page past its end is read. The
  // meta page's last page number is not proof of that, though: LMDB does
  // not write pages a transaction allocated and freed again, so the file of
  // a running broker, or of one that crashed, may legitimately end a few
  // pages early. Such a file is extended (with zero pages) before anything
  // is read; if the start-up walk over every table then finds a page
  // missing (zeros), the file was truncated, and LmdbStore::open puts it
  // back as it was and refuses it. Read-only (`petrel inspect`, often of a
  // running broker's store) the file is not touched: the walk is made in a
  // child process first, where a page past the end faults the child only.
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(env, &info);
  mdb_env_stat(env, &st);
  const uint64_t need = (info.me_last_pgno + 1) * uint64_t(st.ms_psize);
  if (fileSize(data, size) && need > size) {
    const std::string what = data + ": truncated: " + std::to_string(size) + " bytes but pages up to " +
                             std::to_string(need) + " are in use";
    if (!options_.read_only && truncate(data.c_str(), static_cast<off_t>(need)) != 0) {
      error = what + " (extending it failed: " + strerror(errno) + ")";
      return false;
    }
    short_size_ = size;
    short_what_ = what;
    if (options_.read_only && !probe_ && !walksWithoutFault(options_)) {
      error = what + " (a page past its end is in use)";
      return false;
    }
  }

  Txn init(env, options_.read_only ? MDB_RDONLY : 0);
  MDB_txn* txn = init.get();
  rc = init.rc();
  if (rc) {
    error = data + ": cannot begin a transaction: " + errText(rc);
    return false;
  }
  const unsigned create = options_.read_only ? 0 : MDB_CREATE;
  struct Named {
    const char* name;
    MDB_dbi* dbi;
  } dbs[] = {{"meta", &impl_->meta},       {"sessions", &impl_->sessions},
             {"subscriptions", &impl_->subs}, {"queue", &impl_->queue},
             {"inbound_qos2", &impl_->inq2}, {"messages", &impl_->messages},
             {"refs", &impl_->refs},       {"retained", &impl_->retained}};
  // A foreign LMDB file (not written by Petrel) has no "meta" database or no
  // schema key in it.
  MDB_dbi main_dbi;
  bool fresh = false;
  if (mdb_dbi_open(txn, nullptr, 0, &main_dbi) == 0) {
    MDB_stat ms;
    mdb_stat(txn, main_dbi, &ms);
    fresh = ms.ms_entries == 0;
  }
  for (auto& d : dbs) {
    rc = mdb_dbi_open(txn, d.name, create, d.dbi);
    if (rc) {
      error = data + (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE
                          ? std::string(": not a Petrel data store (no '") + d.name + "' table)"
                          : ": cannot open table '" + std::string(d.name) + "': " + errText(rc));
      return false;
    }
  }
  // Added after schema 1 was fixed: created when missing (an older store
  // opens as it was), absent only from an older store opened read-only.
  rc = mdb_dbi_open(txn, "delayed", create, &impl_->delayed);
  if (rc == 0) {
    impl_->has_delayed = true;
  } else if (rc != MDB_NOTFOUND || !options_.read_only) {
    error = data + ": cannot open table 'delayed': " + errText(rc);
    return false;
  }
  MDB_val k = val("schema"), v;
  rc = mdb_get(txn, impl_->meta, &k, &v);
  if (rc == MDB_NOTFOUND) {
    if (!fresh) {
      error = data + ": not a Petrel data store (no schema version)";
      return false;
    }
    if (!options_.read_only) {
      uint32_t ver = kSchemaVersion;
      MDB_val nv{4, &ver};
      rc = mdb_put(txn, impl_->meta, &k, &nv, 0);
    }
  } else if (rc == 0) {
    uint32_t ver = 0;
    if (v.mv_size == 4) std::memcpy(&ver, v.mv_data, 4);
    if (v.mv_size != 4 || ver < kOldestReadableSchema || ver > kSchemaVersion) {
      error = data + ": schema version " + std::to_string(ver) + ", but this Petrel reads version " +
              std::to_string(kSchemaVersion) +
              (ver > kSchemaVersion ? " (written by a newer Petrel; upgrade Petrel)"
                                    : " (no migration from that version exists)");
      return false;
    }
    rc = 0;
    if (ver < kSchemaVersion && !options_.read_only) {
      // Schema 1 -> 2: every schema 1 store is a valid schema 2 store (it
      // holds a reference count for every message, which schema 2 still
      // reads); only the version changes, so that a Petrel that reads
      // schema 1 alone refuses the store from now on instead of
      // miscounting the messages written without a count.
      uint32_t nv_ver = kSchemaVersion;
      MDB_val nv{4, &nv_ver};
      rc = mdb_put(txn, impl_->meta, &k, &nv, 0);
      if (!rc) upgraded_from_ = ver;
    }
  }
  if (rc) {
    error = data + ": " + errText(rc);
    return false;
  }
  // Committing (a read-only transaction too) keeps the table handles valid.
  rc = init.commit();
  if (rc) {
    error = data + ": cannot initialise: " + errText(rc);
    return false;
  }
  {
    Txn rt(env);
    if (!rt.rc()) impl_->used_bytes = impl_->usedBytes(rt.get());
  }
  return true;
}

namespace {

// Walks every record and decodes it, so damage is found at start-up with a
// clear message rather than later as a crash or a silent loss.
bool verifyAll(const Store& s, std::string& error) {
  if (!s.verifyQueuesAndMessages(error)) return false;
  size_t n = 0;
  if (!s.forEachSession([&](std::string_view, const SessionRecord&) { ++n; }, error)) return false;
  if (!s.forEachSubscription([&](std::string_view, const SubscriptionRecord&) { ++n; }, error)) return false;
  if (!s.forEachInboundQos2([&](std::string_view, uint16_t) { ++n; }, error)) return false;
  if (!s.forEachRetained([&](std::string_view, uint64_t) { ++n; }, error)) return false;
  return true;
}

}  // namespace

// A read-only open of a file that ends before its last page: walks every
// table in a child process, so that a page past the end (a truncated file)
// faults the child, not the caller. True when the walk came through (it may
// still have found damage, which the caller's own walk then reports).
bool LmdbStore::walksWithoutFault(const StoreOptions& options) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    // Die of the fault quietly: no core file, no sanitizer report.
    const rlimit none{0, 0};
    setrlimit(RLIMIT_CORE, &none);
    signal(SIGBUS, SIG_DFL);
    signal(SIGSEGV, SIG_DFL);
    std::unique_ptr<LmdbStore> s(new LmdbStore(options));
    s->probe_ = true;
    std::string error;
    if (s->openEnv(error) && verifyAll(*s, error))
      s->readDelayed(DelayedKey{}, SIZE_MAX, [&](const DelayedKey& k) {  // what inspect reads besides
        MessageRecord m;
        s->readDelayedMessage(k, m);
      });
    s.reset();  // closes the environment, giving back its reader slot
    _exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

std::unique_ptr<Store> Store::open(const StoreOptions& options, std::string& error, std::string* notice) {
  return LmdbStore::openLmdb(options, error, notice);
}

std::unique_ptr<LmdbStore> LmdbStore::openLmdb(const StoreOptions& options, std::string& error,
                                               std::string* notice) {
  std::unique_ptr<LmdbStore> s(new LmdbStore(options));
  bool ok = s->openEnv(error) && verifyAll(*s, error);
  if (!ok && s->short_size_ && !options.read_only) {
    // Extended above: the missing pages did hold data. Leave the file as
    // it was found.
    const uint64_t was = s->short_size_;
    error = s->short_what_ + " (" + error + ")";
    s.reset();
    if (truncate((options.dir + "/data.mdb").c_str(), static_cast<off_t>(was)) != 0)
      error += "; restoring its size failed: " + std::string(strerror(errno));
    s.reset(new LmdbStore(options));
  }
  if (!ok) {
    if (options.on_corrupt != OnCorrupt::MoveAside || options.read_only) return nullptr;
    s.reset();
    const std::string data = options.dir + "/data.mdb";
    const std::string aside = data + ".corrupt-" + timestamp();
    if (rename(data.c_str(), aside.c_str()) != 0) {
      error += "; moving it aside failed: " + std::string(strerror(errno));
      return nullptr;
    }
    unlink((options.dir + "/lock.mdb").c_str());
    if (notice) *notice = error + "; moved it aside to " + aside + " and started with an empty store";
    s.reset(new LmdbStore(options));
    std::string err2;
    if (!s->openEnv(err2)) {
      error = err2;
      return nullptr;
    }
  }
  if (ok && s->short_size_ && notice)
    *notice = options.dir + "/data.mdb ended " + std::to_string(s->short_size_) +
              " bytes in, before pages its last transaction allocated and freed" +
              (options.read_only ? " (no data was missing)" : "; extended (no data was missing)");
  if (ok && s->upgraded_from_ && notice) {
    if (!notice->empty()) *notice += "; ";
    *notice += options.dir + "/data.mdb: schema version " + std::to_string(s->upgraded_from_) + " upgraded to " +
               std::to_string(kSchemaVersion);
  }
  if (!options.read_only) {
    s->impl_->writer = std::thread([p = s.get()] { p->writerMain(); });
    // Named, so that operators (top -H, ps -L) and profiles tell it from
    // the event loops; named here, before the store is in use.
    pthread_setname_np(s->impl_->writer.native_handle(), "petrel-store");
  }
  return s;
}

void LmdbStore::setCommitCallback(std::function<void(uint64_t, bool)> cb) {
  std::lock_guard<std::mutex> lk(impl_->mu);
  impl_->on_commit = std::move(cb);
}

uint64_t LmdbStore::committed() const { return impl_->committed.load(std::memory_order_acquire); }

std::unique_ptr<Batch> LmdbStore::enqueue(uint64_t ticket, std::unique_ptr<Batch> batch) {
  std::unique_ptr<Batch> next;
  bool wake;
  {
    std::lock_guard<std::mutex> lk(impl_->mu);
    // A deferrable batch joining others wakes nobody: the writer is busy,
    // or defers them all until its deadline anyway.
    wake = impl_->pending.empty() || !batch->deferrable();
    if (!batch->deferrable()) impl_->hurry = ticket;
    impl_->pending.emplace_back(ticket, std::move(batch));
    impl_->submitted = ticket;
    if (!impl_->spare.empty()) {
      next = std::move(impl_->spare.front());
      impl_->spare.pop_front();
    }
  }
  if (wake) impl_->cv.notify_one();
  return next ? std::move(next) : std::make_unique<Batch>();
}

void LmdbStore::drain() {
  submit();
  std::unique_lock<std::mutex> lk(impl_->mu);
  impl_->hurry = impl_->submitted;
  impl_->cv.notify_one();
  impl_->drained.wait(lk, [&] {
    return impl_->callback_done >= impl_->submitted || !impl_->writer.joinable();
  });
}

namespace {

// A snapshot's read: every table in Table order, each in key order.
class LmdbSnapshot final : public Snapshot {
 public:
  LmdbSnapshot(MDB_txn* txn, uint64_t ticket, std::vector<std::pair<Table, MDB_dbi>> tables)
      : txn_(txn), ticket_(ticket), tables_(std::move(tables)) {}
  ~LmdbSnapshot() override {
    if (cursor_) mdb_cursor_close(cursor_);
    mdb_txn_abort(txn_);
  }
  uint64_t ticket() const override { return ticket_; }
  const std::string& error() const override { return error_; }

  bool next(Batch& out, size_t max_bytes) override {
    const size_t start = out.ops().size();
    while (i_ < tables_.size()) {
      if (!cursor_) {
        const int rc = mdb_cursor_open(txn_, tables_[i_].second, &cursor_);
        if (rc) return fail(rc);
        first_ = true;
      }
      MDB_val k, v;
      const int rc = mdb_cursor_get(cursor_, &k, &v, first_ ? MDB_FIRST : MDB_NEXT);
      first_ = false;
      if (rc == MDB_NOTFOUND) {
        mdb_cursor_close(cursor_);
        cursor_ = nullptr;
        ++i_;
        continue;
      }
      if (rc) return fail(rc);
      out.putRaw(tables_[i_].first, view(k), view(v));
      if (out.ops().size() - start >= max_bytes) return true;
    }
    return out.ops().size() > start;
  }

 private:
  bool fail(int rc) {
    error_ = std::string("reading the store for a snapshot: ") + mdb_strerror(rc);
    i_ = tables_.size();
    return false;
  }
  MDB_txn* txn_;
  uint64_t ticket_;
  std::vector<std::pair<Table, MDB_dbi>> tables_;
  size_t i_ = 0;
  MDB_cursor* cursor_ = nullptr;
  bool first_ = true;
  std::string error_;
};

}  // namespace

std::unique_ptr<Snapshot> LmdbStore::snapshot(uint64_t at_least) {
  Impl& im = *impl_;
  std::unique_lock<std::mutex> lk(im.mu);
  if (!im.writer.joinable() || im.stop) return nullptr;
  im.snap_wanted = true;
  im.snap_at_least = at_least;
  im.hurry = std::max(im.hurry, at_least);  // what it waits for is not deferred
  im.cv.notify_one();
  im.drained.wait(lk, [&] { return !im.snap_wanted || im.stop; });
  if (im.snap_wanted) {  // stopped first
    im.snap_wanted = false;
    return nullptr;
  }
  MDB_txn* txn = im.snap_txn;
  im.snap_txn = nullptr;
  if (!txn) return nullptr;
  std::vector<std::pair<Table, MDB_dbi>> tables = {
      {Table::Meta, im.meta},   {Table::Sessions, im.sessions}, {Table::Subscriptions, im.subs},
      {Table::Queue, im.queue}, {Table::InboundQos2, im.inq2},  {Table::Messages, im.messages},
      {Table::Refs, im.refs},   {Table::Retained, im.retained}};
  if (im.has_delayed) tables.emplace_back(Table::Delayed, im.delayed);
  return std::make_unique<LmdbSnapshot>(txn, im.snap_ticket, std::move(tables));
}

void LmdbStore::writerMain() {
  Impl& im = *impl_;
  auto last_sync = std::chrono::steady_clock::now();
  auto last_reader_check = last_sync;
  auto last_slow_report = last_sync - kSlowCommitReportS;
  uint64_t slow_unreported = 0;
  std::chrono::nanoseconds slowest_unreported{0};
  bool unsynced = false;
  while (true) {
    std::deque<std::pair<uint64_t, std::unique_ptr<Batch>>> work;
    {
      std::unique_lock<std::mutex> lk(im.mu);
      const auto wait = std::chrono::milliseconds(options_.sync_interval_ms);
      if (options_.sync == SyncMode::Periodic && unsynced) {
        im.cv.wait_for(lk, wait, [&] { return im.stop || !im.pending.empty() || im.snapReady(); });
      } else {
        im.cv.wait(lk, [&] { return im.stop || !im.pending.empty() || im.snapReady(); });
      }
      if (im.snapReady()) {
        // Between two commits: the read sees exactly what callback_done
        // committed.
        im.beginSnapshot();
        im.drained.notify_all();
      }
      if (im.pending.empty() && im.stop) break;
      if (options_.sync == SyncMode::Fsync && !im.stop && !im.pending.empty() &&
          im.hurry < im.pending.front().first) {
        // Only deletions nobody waits for: gather more of them into this
        // commit (a draining subscriber's acknowledgements), so that the
        // pages they touch are written and flushed once for many.
        im.cv.wait_for(lk, std::chrono::milliseconds(kDeferDeletesMs),
                       [&] { return im.stop || im.hurry >= im.pending.front().first; });
      }
      work.swap(im.pending);
    }
    if (!work.empty()) {
      // Group commit: every batch that queued up while the last commit was
      // being flushed goes into this one transaction.
      uint64_t top = work.back().first;
      const auto started = std::chrono::steady_clock::now();
      if (started - last_reader_check >= std::chrono::milliseconds(options_.reader_check_interval_ms)) {
        last_reader_check = started;
        int dead = 0;
        if (mdb_reader_check(im.env, &dead) == 0 && dead > 0)
          fprintf(stderr,
                  "petrel: persistence: cleared %d reader slot(s) of processes that ended in the middle of a "
                  "read; the pages they held are free again\n",
                  dead);
      }
      Txn txn(im.env, 0);
      int rc = txn.rc();
      if (!rc) {
        rc = im.applyGroup(txn.get(), work);
        uint64_t used = 0;
        if (!rc) used = im.usedBytes(txn.get());
        if (!rc) rc = txn.commit();  // on an error the transaction is aborted
        if (!rc) im.used_bytes = used;
      }
      if (rc) {
        fprintf(stderr, "petrel: persistence: commit of batches up to %llu failed: %s\n",
                static_cast<unsigned long long>(top), mdb_strerror(rc));
      } else {
        unsynced = true;
        const auto ended = std::chrono::steady_clock::now();
        const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(ended - started);
        commit_latency_.record(static_cast<uint64_t>(took.count()));
        if (took >= kSlowCommit) {
          ++slow_unreported;
          slowest_unreported = std::max(slowest_unreported, took);
        }
        if (slow_unreported && ended - last_slow_report >= kSlowCommitReportS) {
          fprintf(stderr,
                  "petrel: persistence: slow disk: %llu commit(s) took %.0f ms or more, the slowest %.0f ms (%s); "
                  "acknowledgements that wait for the store waited as long\n",
                  static_cast<unsigned long long>(slow_unreported),
                  std::chrono::duration<double, std::milli>(kSlowCommit).count(),
                  std::chrono::duration<double, std::milli>(slowest_unreported).count(),
                  options_.sync == SyncMode::Fsync ? "transaction and fsync" : "transaction");
          last_slow_report = ended;
          slow_unreported = 0;
          slowest_unreported = std::chrono::nanoseconds{0};
        }
      }
      std::function<void(uint64_t, bool)> cb;
      {
        std::lock_guard<std::mutex> lk(im.mu);
        im.committed.store(top, std::memory_order_release);
        for (auto& [t, b] : work) {
          b->clear();
          if (im.spare.size() < 4) im.spare.push_back(std::move(b));
        }
        cb = im.on_commit;
      }
      // The callback runs before drain() can return, so that nobody tears
      // down what it uses while it runs.
      if (cb) cb(top, rc == 0);
      {
        std::lock_guard<std::mutex> lk(im.mu);
        im.callback_done = top;
      }
      im.drained.notify_all();
    }
    if (options_.sync == SyncMode::Periodic && unsynced &&
        std::chrono::steady_clock::now() - last_sync >= std::chrono::milliseconds(options_.sync_interval_ms)) {
      mdb_env_sync(im.env, 1);
      last_sync = std::chrono::steady_clock::now();
      unsynced = false;
    }
  }
  if (unsynced) mdb_env_sync(im.env, 1);
  im.drained.notify_all();
}

// --- reads ---

bool LmdbStore::forEachSession(const std::function<void(std::string_view, const SessionRecord&)>& f,
                           std::string& error) const {
  Txn txn(impl_->env);
  if (txn.rc()) return error = errText(txn.rc()), false;
  Cursor c(txn.get(), impl_->sessions);
  MDB_val k, v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    SessionRecord r;
    if (!decodeSession(view(v), r)) {
      error = options_.dir + "/data.mdb: corrupt session record for client '" + std::string(view(k)) + "'";
      return false;
    }
    f(view(k), r);
  }
  if (rc != MDB_NOTFOUND) return error = options_.dir + "/data.mdb: sessions: " + errText(rc), false;
  return true;
}

bool LmdbStore::forEachSubscription(
    const std::function<void(std::string_view, const SubscriptionRecord&)>& f, std::string& error) const {
  Txn txn(impl_->env);
  if (txn.rc()) return error = errText(txn.rc()), false;
  Cursor c(txn.get(), impl_->subs);
  MDB_val k, v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    std::string_view cid, key;
    SubscriptionRecord r;
    if (!splitClientKey(view(k), cid, key) || !decodeSubscription(key, view(v), r)) {
      error = options_.dir + "/data.mdb: corrupt subscription record";
      return false;
    }
    f(cid, r);
  }
  if (rc != MDB_NOTFOUND) return error = options_.dir + "/data.mdb: subscriptions: " + errText(rc), false;
  return true;
}

bool LmdbStore::forEachInboundQos2(const std::function<void(std::string_view, uint16_t)>& f,
                               std::string& error) const {
  Txn txn(impl_->env);
  if (txn.rc()) return error = errText(txn.rc()), false;
  Cursor c(txn.get(), impl_->inq2);
  MDB_val k, v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    std::string_view cid, rest;
    if (!splitClientKey(view(k), cid, rest) || rest.size() != 2) {
      error = options_.dir + "/data.mdb: corrupt inbound QoS 2 record";
      return false;
    }
    uint16_t pid;
    std::memcpy(&pid, rest.data(), 2);
    f(cid, pid);
  }
  if (rc != MDB_NOTFOUND) return error = options_.dir + "/data.mdb: inbound_qos2: " + errText(rc), false;
  return true;
}

bool LmdbStore::forEachRetained(const std::function<void(std::string_view, uint64_t)>& f,
                            std::string& error) const {
  Txn txn(impl_->env);
  if (txn.rc()) return error = errText(txn.rc()), false;
  Cursor c(txn.get(), impl_->retained);
  MDB_val k, v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    if (v.mv_size != 8) {
      error = options_.dir + "/data.mdb: corrupt retained record for '" + std::string(view(k)) + "'";
      return false;
    }
    uint64_t id;
    std::memcpy(&id, v.mv_data, 8);
    f(view(k), id);
  }
  if (rc != MDB_NOTFOUND) return error = options_.dir + "/data.mdb: retained: " + errText(rc), false;
  return true;
}

size_t LmdbStore::readQueue(std::string_view cid, uint64_t from, size_t limit,
                        const std::function<void(QueueRecord&)>& f) const {
  Txn txn(impl_->env);
  if (txn.rc()) return 0;
  Cursor c(txn.get(), impl_->queue);
  const std::string start = seqKey(cid, from);
  const std::string prefix = clientKey(cid, "");
  MDB_val k = val(start), v;
  size_t n = 0;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
  for (; rc == 0 && n < limit; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    std::string_view key = view(k);
    if (!hasPrefix(key, prefix) || key.size() != prefix.size() + 8) break;
    QueueRecord q;
    if (!decodeQueue(readU64Key(key.substr(prefix.size())), view(v), q)) continue;
    f(q);
    ++n;
  }
  return n;
}

Store::QueueInfo LmdbStore::queueInfo(std::string_view cid) const {
  QueueInfo qi;
  Txn txn(impl_->env);
  if (txn.rc()) return qi;
  Cursor c(txn.get(), impl_->queue);
  const std::string prefix = clientKey(cid, "");
  MDB_val k = val(prefix), v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
  for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    std::string_view key = view(k);
    if (!hasPrefix(key, prefix) || key.size() != prefix.size() + 8) break;
    const uint64_t seq = readU64Key(key.substr(prefix.size()));
    QueueRecord q;
    if (!decodeQueue(seq, view(v), q)) continue;
    if (qi.count++ == 0) qi.first_seq = seq;
    qi.last_seq = seq;
    qi.bytes += q.bytes;
  }
  return qi;
}

void LmdbStore::forEachQueueOwner(std::string_view prefix,
                              const std::function<void(std::string_view)>& f) const {
  Txn txn(impl_->env);
  if (txn.rc()) return;
  Cursor c(txn.get(), impl_->queue);
  std::string last;
  bool have = false;
  MDB_val k = val(prefix), v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
  for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    std::string_view key = view(k);
    if (!hasPrefix(key, prefix)) break;
    std::string_view cid, rest;
    if (!splitClientKey(key, cid, rest)) continue;
    if (have && cid == last) continue;
    last.assign(cid);
    have = true;
    f(cid);
  }
}

bool LmdbStore::readMessage(uint64_t id, MessageRecord& out) const {
  Txn txn(impl_->env);
  if (txn.rc()) return false;
  const std::string k = u64Key(id);
  MDB_val key = val(k), v;
  if (mdb_get(txn.get(), impl_->messages, &key, &v) != 0) return false;
  return decodeMessage(view(v), out);
}

void LmdbStore::readMessageViews(const std::vector<uint64_t>& ids,
                                 const std::function<void(uint64_t, const MessageView&)>& f) const {
  if (ids.empty()) return;
  Txn txn(impl_->env);
  if (txn.rc()) return;
  // One cursor for the window. Its ids mostly ascend, and most often each
  // is the next record: the cursor steps to it (MDB_NEXT) instead of
  // looking it up; any other id is looked up (MDB_SET_KEY, which tries
  // the cursor's current page before it searches from the root).
  Cursor c(txn.get(), impl_->messages);
  if (c.rc()) return;
  bool at_last = false;  // the cursor is on the record of the previous id
  uint64_t last = 0;
  for (uint64_t id : ids) {
    MDB_val key, v;
    bool found = false;
    if (at_last && id == last + 1 && mdb_cursor_get(c.get(), &key, &v, MDB_NEXT) == 0) {
      if (key.mv_size == 8 && readU64Key(view(key)) == id) found = true;
    }
    if (!found) {
      U64Key k(id);
      key = k.val();
      found = mdb_cursor_get(c.get(), &key, &v, MDB_SET_KEY) == 0;
    }
    at_last = found;
    last = id;
    MessageView m;
    if (found && decodeMessage(view(v), m)) f(id, m);
  }
}

bool LmdbStore::verifyQueuesAndMessages(std::string& error) const {
  Txn txn(impl_->env);
  if (txn.rc()) return error = errText(txn.rc()), false;
  const std::string file = options_.dir + "/data.mdb";
  // Every page of the tables not decoded below is read too (reference
  // counts, meta, LMDB's free list): a page missing from the file shows
  // here, not later on the writer thread.
  for (MDB_dbi d : {impl_->refs, impl_->meta, MDB_dbi(0)}) {
    Cursor c(txn.get(), d);
    if (c.rc()) return error = file + ": " + errText(c.rc()), false;
    MDB_val k, v;
    int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
    while (rc == 0) rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
    if (rc != MDB_NOTFOUND) return error = file + ": " + errText(rc), false;
  }
  {
    Cursor c(txn.get(), impl_->queue);
    MDB_val k, v;
    int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
      std::string_view cid, rest;
      QueueRecord q;
      if (!splitClientKey(view(k), cid, rest) || rest.size() != 8 ||
          !decodeQueue(readU64Key(rest), view(v), q)) {
        error = file + ": corrupt queue entry of client '" + std::string(cid) + "'";
        return false;
      }
    }
    if (rc != MDB_NOTFOUND) return error = file + ": queue: " + errText(rc), false;
  }
  Cursor c(txn.get(), impl_->messages);
  MDB_val k, v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    MessageRecord m;
    if (k.mv_size != 8 || !decodeMessage(view(v), m)) {
      error = file + ": corrupt message record " + std::to_string(readU64Key(view(k)));
      return false;
    }
  }
  if (rc != MDB_NOTFOUND) return error = file + ": messages: " + errText(rc), false;
  return true;
}

uint64_t LmdbStore::maxMessageId() const {
  Txn txn(impl_->env);
  if (txn.rc()) return 0;
  uint64_t top = 0;
  MDB_val k = val(kDelayedMaxId), v;
  if (mdb_get(txn.get(), impl_->meta, &k, &v) == 0 && v.mv_size == 8) std::memcpy(&top, v.mv_data, 8);
  Cursor c(txn.get(), impl_->messages);
  if (mdb_cursor_get(c.get(), &k, &v, MDB_LAST) != 0) return top;
  return std::max(top, readU64Key(view(k)));
}

uint64_t LmdbStore::delayedCount() const {
  if (!impl_->has_delayed) return 0;
  Txn txn(impl_->env);
  if (txn.rc()) return 0;
  MDB_stat st;
  return mdb_stat(txn.get(), impl_->delayed, &st) == 0 ? uint64_t(st.ms_entries) : 0;
}

size_t LmdbStore::readDelayed(const DelayedKey& after, size_t limit,
                              const std::function<void(const DelayedKey&)>& f) const {
  if (!impl_->has_delayed || limit == 0) return 0;
  Txn txn(impl_->env);
  if (txn.rc()) return 0;
  Cursor c(txn.get(), impl_->delayed);
  const std::string start = delayedKey(after);
  MDB_val k = val(start), v;
  size_t n = 0;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
  for (; rc == 0 && n < limit; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    DelayedKey dk;
    if (!readDelayedKey(view(k), dk)) continue;  // not ours: skipped
    if (!(after < dk)) continue;
    f(dk);
    ++n;
  }
  if (rc != 0 && rc != MDB_NOTFOUND)
    fprintf(stderr, "petrel: persistence: reading delayed publishes: %s\n", mdb_strerror(rc));
  return n;
}

bool LmdbStore::readDelayedMessage(const DelayedKey& dk, MessageRecord& out) const {
  if (!impl_->has_delayed) return false;
  Txn txn(impl_->env);
  if (txn.rc()) return false;
  const std::string k = delayedKey(dk);
  MDB_val key = val(k), v;
  if (mdb_get(txn.get(), impl_->delayed, &key, &v) != 0) return false;
  return decodeMessage(view(v), out);
}

StoreStats LmdbStore::stats() const {
  StoreStats s;
  Txn txn(impl_->env);
  if (txn.rc()) return s;
  auto entries = [&](MDB_dbi d) {
    MDB_stat st;
    return mdb_stat(txn.get(), d, &st) == 0 ? uint64_t(st.ms_entries) : 0;
  };
  s.sessions = entries(impl_->sessions);
  s.subscriptions = entries(impl_->subs);
  s.queued = entries(impl_->queue);
  s.messages = entries(impl_->messages);
  s.retained = entries(impl_->retained);
  s.inbound_qos2 = entries(impl_->inq2);
  if (impl_->has_delayed) s.delayed = entries(impl_->delayed);
  MDB_envinfo info;
  mdb_env_info(impl_->env, &info);
  s.used_bytes = impl_->usedBytes(txn.get());
  s.map_size = info.me_mapsize;
  return s;
}

uint64_t LmdbStore::usedBytes() const { return impl_->used_bytes.load(std::memory_order_relaxed); }

}  // namespace petrel::persistence
