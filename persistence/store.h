// persistence/store.h — the store interface the broker persists through,
// its options and statistics. The LMDB implementation is lmdb_store.h; it is
// the only code that includes lmdb.h (in lmdb_store.cpp).
//
// Durability contract: the broker sends PUBACK/PUBREC for a message it must
// keep only after the batch holding it has committed (the commit callback
// reports the highest committed ticket). In `fsync` mode each commit is
// flushed to disk before it is reported; in `periodic` mode the writer
// flushes every `sync_interval_ms`: a process crash loses nothing (the data
// is in the page cache), a power loss may lose that interval.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "persistence/records.h"

namespace petrel::persistence {

enum class SyncMode { Fsync, Periodic };
enum class OnCorrupt { Fail, MoveAside };

struct StoreOptions {
  std::string dir = "./data";
  uint64_t map_size = 4ull << 30;  // the store's size cap
  SyncMode sync = SyncMode::Fsync;
  uint32_t sync_interval_ms = 200;
  OnCorrupt on_corrupt = OnCorrupt::Fail;
  bool read_only = false;  // `petrel inspect`
  // How often the writer clears reader slots left by processes that ended
  // in the middle of a read (a `petrel inspect` stopped with Ctrl-C): LMDB
  // keeps every page such a slot might still see, so the file would grow.
  uint32_t reader_check_interval_ms = 10000;
};

struct StoreStats {
  uint64_t sessions = 0;
  uint64_t subscriptions = 0;
  uint64_t queued = 0;
  uint64_t messages = 0;
  uint64_t retained = 0;
  uint64_t inbound_qos2 = 0;
  uint64_t delayed = 0;
  uint64_t used_bytes = 0;
  uint64_t map_size = 0;
};

// How long commits take (the transaction and, in fsync mode, the flush):
// a histogram with fixed bounds, written by the backend's writer thread with
// relaxed atomics and read from any thread (monitoring).
class CommitLatency {
 public:
  // Upper bounds of the buckets, in seconds; a last bucket takes the rest.
  static constexpr double kBounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1.0,  2.5};
  static constexpr size_t kBuckets = sizeof(kBounds) / sizeof(kBounds[0]);

  void record(uint64_t ns) {
    const double s = static_cast<double>(ns) / 1e9;
    size_t i = 0;
    while (i < kBuckets && s > kBounds[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  }
  // Commits in bucket i alone (not cumulative); i == kBuckets: above the last bound.
  uint64_t bucket(size_t i) const { return counts_[i].load(std::memory_order_relaxed); }
  double sumSeconds() const { return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9; }

 private:
  std::atomic<uint64_t> counts_[kBuckets + 1] = {};
  std::atomic<uint64_t> sum_ns_{0};
};

// Every record of a store as of one commit, read in pieces (the cluster's
// replica of a node's store). Holds a read transaction: the store keeps the
// pages it reads until it is gone, so it is read through and dropped.
class Snapshot {
 public:
  virtual ~Snapshot() = default;
  // The highest ticket whose batch it holds (of this run of the store).
  virtual uint64_t ticket() const = 0;
  // Appends the next records (Batch::putRaw) to `out` until about
  // `max_bytes` were added; false once there are no more, or on a read
  // error (`error` says which).
  virtual bool next(Batch& out, size_t max_bytes) = 0;
  virtual const std::string& error() const = 0;
};

// The store the broker writes to and reads from. LMDB today
// (lmdb_store.h); a clustered backend implements the same interface.
//
// Writing: the loop thread fills batch() during a loop turn; submit() hands
// it over for commit under ticket(). Batches commit in ticket order, and the
// commit callback reports the highest committed ticket (on the backend's
// thread). Reading is allowed from any thread.
class Store {
 public:
  // The schema this build writes. A store of an older version from
  // kOldestReadableSchema on is upgraded when opened for writing; any other
  // version is refused.
  //   1: every message has a reference count record.
  //   2: a message with one holder has none (no record means one).
  static constexpr uint32_t kSchemaVersion = 2;
  static constexpr uint32_t kOldestReadableSchema = 1;

  // Opens (creating if needed) the store in options.dir. On a damaged or
  // foreign store, returns null with `error` saying what and where — or,
  // with OnCorrupt::MoveAside, renames the files aside, logs through
  // `notice`, and opens an empty store.
  static std::unique_ptr<Store> open(const StoreOptions& options, std::string& error,
                                     std::string* notice = nullptr);
  virtual ~Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // --- writing (loop thread) ---
  // The batch being filled in this loop turn; it commits under ticket().
  Batch& batch() { return *current_; }
  uint64_t ticket() const { return next_ticket_; }
  // ticket(), for a caller that will wait for its commit (holds an
  // acknowledgement until then): the batch is committed without delay.
  uint64_t awaitedTicket() {
    current_->markAwaited();
    return next_ticket_;
  }
  // Hands the current batch over for commit (no-op when empty).
  void submit() {
    if (current_->empty()) return;
    current_ = enqueue(next_ticket_, std::move(current_));
    ++next_ticket_;
  }
  // Called on the backend's thread after each commit with the highest
  // committed ticket; `ok` false if the commit failed (the store is full or
  // the disk failed): nothing of that batch was stored.
  virtual void setCommitCallback(std::function<void(uint64_t ticket, bool ok)> cb) = 0;
  virtual uint64_t committed() const = 0;
  // Waits until everything submitted is committed (shutdown, tests).
  virtual void drain() = 0;
  // Waits until the batch of `at_least` has committed, and reads the
  // store as of a commit from then on, between two commits; null when the
  // store is stopping or the read could not begin. Any thread.
  virtual std::unique_ptr<Snapshot> snapshot(uint64_t at_least) = 0;

  // --- reading (any thread) ---
  virtual bool forEachSession(const std::function<void(std::string_view, const SessionRecord&)>& f,
                              std::string& error) const = 0;
  virtual bool forEachSubscription(
      const std::function<void(std::string_view, const SubscriptionRecord&)>& f, std::string& error) const = 0;
  virtual bool forEachInboundQos2(const std::function<void(std::string_view, uint16_t)>& f,
                                  std::string& error) const = 0;
  virtual bool forEachRetained(const std::function<void(std::string_view, uint64_t)>& f,
                               std::string& error) const = 0;
  // Queue entries of `client_id` with seq >= from, in order, at most `limit`.
  // `f` may move from the record it is given.
  virtual size_t readQueue(std::string_view client_id, uint64_t from, size_t limit,
                           const std::function<void(QueueRecord&)>& f) const = 0;
  struct QueueInfo {
    uint64_t count = 0;
    uint64_t first_seq = 0;  // 0 if empty
    uint64_t last_seq = 0;
    uint64_t bytes = 0;
  };
  // Entries of one session's queue, as stored.
  virtual QueueInfo queueInfo(std::string_view client_id) const = 0;
  virtual bool readMessage(uint64_t id, MessageRecord& out) const = 0;
  // The messages of `ids` in one read transaction (a queue's window read
  // back); `f` is called for each one found, in the order of `ids`. The
  // views are valid only during the call to `f`.
  virtual void readMessageViews(const std::vector<uint64_t>& ids,
                                const std::function<void(uint64_t id, const MessageView& m)>& f) const = 0;
  // The same, each message copied out.
  void readMessages(const std::vector<uint64_t>& ids,
                    const std::function<void(uint64_t id, MessageRecord&& m)>& f) const {
    readMessageViews(ids, [&](uint64_t id, const MessageView& v) { f(id, recordOf(v)); });
  }
  // Every distinct queue owner (client id or group key) starting with
  // `prefix`.
  virtual void forEachQueueOwner(std::string_view prefix,
                                 const std::function<void(std::string_view)>& f) const = 0;
  // Delayed publishes (src/delayed/): how many wait (cheap: no walk); the
  // keys after `after` in due order, at most `limit` (DelayedKey{} reads
  // from the first); the message of one. A store written before delayed
  // publish existed has none.
  virtual uint64_t delayedCount() const = 0;
  virtual size_t readDelayed(const DelayedKey& after, size_t limit,
                             const std::function<void(const DelayedKey&)>& f) const = 0;
  virtual bool readDelayedMessage(const DelayedKey& k, MessageRecord& out) const = 0;
  // The highest message id in use (message records and delayed publishes).
  virtual uint64_t maxMessageId() const = 0;
  // Decodes every queue entry and message record (start-up check): false
  // with `error` naming the file and the record when one is damaged.
  // Delayed publishes are not walked (start-up reads only their count and
  // first window); a damaged one is reported when it is due.
  virtual bool verifyQueuesAndMessages(std::string& error) const = 0;
  virtual StoreStats stats() const = 0;
  // Bytes in use as of the last commit (cheap; for the size cap).
  virtual uint64_t usedBytes() const = 0;
  virtual uint64_t mapSize() const = 0;
  // Commit durations so far (any thread).
  const CommitLatency& commitLatency() const { return commit_latency_; }

 protected:
  Store() : current_(std::make_unique<Batch>()) {}
  // Takes a filled batch for commit under `ticket`; returns an empty one to
  // fill next.
  virtual std::unique_ptr<Batch> enqueue(uint64_t ticket, std::unique_ptr<Batch> batch) = 0;
  // Recorded by the backend's writer thread.
  CommitLatency commit_latency_;

 private:
  std::unique_ptr<Batch> current_;
  uint64_t next_ticket_ = 1;
};

}  // namespace petrel::persistence
