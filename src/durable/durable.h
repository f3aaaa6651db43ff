// src/durable/durable.h — the broker's side of persistence: the store it
// writes to (persistence::Store, an interface: LMDB today), the group commit
// notifications coming back from the store's writer thread, message ids,
// the cache of messages read back from disk, the size cap, and the
// conversion between broker objects and store records (records.h).
//
// Owns: the store, the commit notifier (a uv_async_t), the message cache.
// May call: persistence/, libuv. Knows nothing of connections or routing:
// whoever waits for a commit registers a callback (onCommit).
#pragma once

#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "persistence/store.h"
#include "src/routing/message.h"
#include "src/util/block_pool.h"

namespace petrel {

// A copy of the store kept elsewhere (the cluster's replica of a node's
// store, src/cluster/store_replica.h). Every batch goes to it as it is
// submitted, and whoever waits for a batch's commit waits for the replica
// to hold it too (Durable::committed()).
class StoreReplica {
 public:
  virtual ~StoreReplica() = default;
  // Loop thread: the batch about to be submitted under `ticket`.
  virtual void add(uint64_t ticket, const persistence::Batch& batch) = 0;
  // Any thread: the replica holds every batch up to this ticket.
  virtual uint64_t covered() const = 0;
  // Waits until covered() reaches `ticket`, at most `ms` (shutdown).
  virtual void waitFor(uint64_t ticket, int ms) = 0;
};

class Durable {
 public:
  explicit Durable(uv_loop_t* loop) : loop_(loop) {}
  ~Durable() = default;
  Durable(const Durable&) = delete;
  Durable& operator=(const Durable&) = delete;

  // Takes the store; `on_commit` runs on the loop after each commit, with
  // `failed` true when a batch could not be stored.
  void attach(std::unique_ptr<persistence::Store> store, std::function<void(bool failed)> on_commit);
  // After the loop has ended: waits until everything is committed and
  // closes the notifier.
  void finish();
  // Lets the loop end while the notifier is still open (shutdown).
  void unref();

  bool enabled() const { return store_ != nullptr; }
  persistence::Store& store() { return *store_; }
  persistence::Batch& batch() { return store_->batch(); }
  uint64_t ticket() const { return store_->ticket(); }
  // The ticket of this turn's batch for whoever holds an acknowledgement
  // until it commits: such a batch is never deferred.
  uint64_t awaitedTicket() { return store_->awaitedTicket(); }
  // Committed, and held by the replica when there is one.
  uint64_t committed() const {
    const uint64_t c = store_->committed();
    return replica_ ? std::min(c, replica_->covered()) : c;
  }
  // Hands this loop turn's writes to the writer thread as one batch (and
  // to the replica).
  void submit() {
    if (!store_) return;
    if (replica_ && !store_->batch().empty()) replica_->add(store_->ticket(), store_->batch());
    store_->submit();
  }
  // Submits what this loop turn wrote and waits for every commit.
  void drain() {
    submit();
    store_->drain();
    if (replica_) replica_->waitFor(store_->committed(), 3000);
  }
  // From now on every batch also goes to `r` (null: no more). Loop thread.
  void setReplica(StoreReplica* r) { replica_ = r; }
  // Any thread: what the replica holds grew; the loop reads committed()
  // again (as after a commit).
  void replicaMoved() { uv_async_send(&commit_async_); }

  // Every message gets a store id while persistence is on (the record is
  // written only when a durable holder exists); 0 without persistence.
  uint64_t newMessageId() { return store_ ? next_msg_id_++ : 0; }
  void setNextMessageId(uint64_t id) { next_msg_id_ = id; }
  // Writes the message record, referenced by `refs` queue entries / slots.
  void putMessage(const Message& m, uint32_t refs);
  // The message `id`, shared with every holder that loaded it already;
  // null when the store has no such record.
  MessagePtr loadMessage(uint64_t id);
  // The messages of `ids` (a window of a queue read back), in their order,
  // null where the store has none: those in memory shared, the rest read
  // in one store transaction.
  std::vector<MessagePtr> loadMessages(const std::vector<uint64_t>& ids);
  // A holder is done with `m`, a message it may have loaded: when it is
  // the last, the cache entry goes now instead of at the next trim, so
  // that the message's block (which holds its reference counts while an
  // entry refers to it) is free again for the next message read back.
  void released(const MessagePtr& m) {
    if (msg_cache_.empty() || !m || m.use_count() != 1) return;
    const auto it = msg_cache_.find(m->id);
    if (it != msg_cache_.end() && !it->second.owner_before(m) && !m.owner_before(it->second)) msg_cache_.erase(it);
  }
  // Messages in the cache (live or not yet trimmed).
  size_t cachedMessages() const { return msg_cache_.size(); }
  // Drops cache entries no holder uses any more, once the cache has grown
  // past twice `keep` or twice what it held after the last trim (so that a
  // cache of live messages is not walked again on every call).
  void trimCache(size_t keep);
  // True above 90% of persistence.max_size_mb (logged once per episode):
  // new messages for durable queues are dropped, never half-stored.
  bool full();

 private:
  static void onCommitAsync(uv_async_t* h);

  uv_loop_t* loop_;
  std::unique_ptr<persistence::Store> store_;
  uv_async_t commit_async_;
  std::atomic<uint64_t> failed_upto_{0};
  std::function<void(bool failed)> on_commit_;
  // Its nodes come from the thread's pool of blocks: a draining queue adds
  // one per message read back, and trimCache drops them in bursts.
  using CacheEntry = std::pair<const uint64_t, std::weak_ptr<const Message>>;
  std::unordered_map<uint64_t, std::weak_ptr<const Message>, std::hash<uint64_t>, std::equal_to<uint64_t>,
                     PoolAllocator<CacheEntry>>
      msg_cache_;
  size_t trim_at_ = 0;  // trimCache walks the cache from this size on
  std::string props_scratch_;  // putMessage: an MQTT 5 property block
  uint64_t next_msg_id_ = 1;
  bool full_logged_ = false;
  StoreReplica* replica_ = nullptr;
};

}  // namespace petrel
