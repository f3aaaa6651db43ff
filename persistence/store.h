// persistence/store.h — the LMDB store: opening and validating the data
// directory, a writer thread that applies batches with group commit, and
// read access for start-up, queue refills and `petrel inspect`.
//
// This is the only code that includes lmdb.h (in store.cpp).
//
// Durability contract: the broker sends PUBACK/PUBREC for a message it must
// keep only after the batch holding it has committed (the commit callback
// reports the highest committed ticket). In `fsync` mode each commit is
// flushed to disk before it is reported; in `periodic` mode the writer
// flushes every `sync_interval_ms`: a process crash loses nothing (the data
// is in the page cache), a power loss may lose that interval.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

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
};

struct StoreStats {
  uint64_t sessions = 0;
  uint64_t subscriptions = 0;
  uint64_t queued = 0;
  uint64_t messages = 0;
  uint64_t retained = 0;
  uint64_t inbound_qos2 = 0;
  uint64_t used_bytes = 0;
  uint64_t map_size = 0;
};

class Store {
 public:
  // The schema this build writes. A store with another version is refused
  // (or migrated, when a migration exists).
  static constexpr uint32_t kSchemaVersion = 1;

  // Opens (creating if needed) the store in options.dir. On a damaged or
  // foreign store, returns null with `error` saying what and where — or,
  // with OnCorrupt::MoveAside, renames the files aside, logs through
  // `notice`, and opens an empty store.
  static std::unique_ptr<Store> open(const StoreOptions& options, std::string& error,
                                     std::string* notice = nullptr);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // --- writing (loop thread) ---
  // The batch being filled in this loop turn; it commits under ticket().
  Batch& batch() { return *current_; }
  uint64_t ticket() const { return next_ticket_; }
  // Hands the current batch to the writer thread (no-op when empty).
  void submit();
  // Called on the writer thread after each commit with the highest
  // committed ticket; `ok` false if the commit failed (the store is full or
  // the disk failed): nothing of that batch was stored.
  void setCommitCallback(std::function<void(uint64_t ticket, bool ok)> cb);
  uint64_t committed() const;
  // Waits until everything submitted is committed (shutdown, tests).
  void drain();

  // --- reading (any thread) ---
  bool forEachSession(const std::function<void(std::string_view, const SessionRecord&)>& f,
                      std::string& error) const;
  bool forEachSubscription(const std::function<void(std::string_view, const SubscriptionRecord&)>& f,
                           std::string& error) const;
  bool forEachInboundQos2(const std::function<void(std::string_view, uint16_t)>& f,
                          std::string& error) const;
  bool forEachRetained(const std::function<void(std::string_view, uint64_t)>& f,
                       std::string& error) const;
  // Queue entries of `client_id` with seq >= from, in order, at most `limit`.
  size_t readQueue(std::string_view client_id, uint64_t from, size_t limit,
                   const std::function<void(const QueueRecord&)>& f) const;
  struct QueueInfo {
    uint64_t count = 0;
    uint64_t first_seq = 0;  // 0 if empty
    uint64_t last_seq = 0;
    uint64_t bytes = 0;
  };
  // Entries of one session's queue, as stored.
  QueueInfo queueInfo(std::string_view client_id) const;
  bool readMessage(uint64_t id, MessageRecord& out) const;
  // Every distinct queue owner (client id or group key) starting with
  // `prefix`.
  void forEachQueueOwner(std::string_view prefix, const std::function<void(std::string_view)>& f) const;
  uint64_t maxMessageId() const;
  // Decodes every queue entry and message record (start-up check): false
  // with `error` naming the file and the record when one is damaged.
  bool verifyQueuesAndMessages(std::string& error) const;
  StoreStats stats() const;
  // Bytes in use as of the last commit (cheap; for the size cap).
  uint64_t usedBytes() const;
  uint64_t mapSize() const { return options_.map_size; }

 private:
  struct Impl;
  explicit Store(const StoreOptions& o);
  bool openEnv(std::string& error);
  void writerMain();

  StoreOptions options_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<Batch> current_;
  uint64_t next_ticket_ = 1;
  // openEnv() extended a file shorter than its last page: the size it had.
  uint64_t short_size_ = 0;
  std::string short_what_;
};

}  // namespace petrel::persistence
