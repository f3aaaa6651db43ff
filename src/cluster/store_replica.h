// src/cluster/store_replica.h — a node's store, kept in JetStream as well:
// what the node acknowledged does not live only on its disk.
//
// The replica is the store's own write-ahead log. Every batch the loop
// submits (persistence::Batch, one per loop turn) is also published, as it
// is, on "<name>.r.<node>.l" of the stream "<name>_replica" (a limits
// stream on `replicas` servers); batches gathered while the last record
// was being stored travel as one record. From time to time the whole store
// is written on "<name>.r.<node>.s" as it was after one commit (a
// snapshot: Store::snapshot, every record of every table; its end on
// "<name>.r.<node>.e" says it is complete and where it starts), and what it
// makes unneeded is purged: the older snapshot, and the log up to the
// snapshot's commit. So the replica holds one snapshot and the log after
// it, about the size of the store plus twice that at most.
//
// While the replica is live, whoever waits for a batch's commit (a PUBACK,
// a PUBREC, a CONNACK) waits until the replica holds it too
// (Durable::committed). It becomes live when its first snapshot is
// stored. A replica that cannot store for kStallMs (JetStream away), or
// whose queue passes kMaxQueuedBytes, stops being live: acknowledgements
// follow the node's disk alone again (logged, and shown as `replica` in
// the metrics), and once JetStream answers it starts over with a new
// snapshot.
//
// restoreReplica() reads it back into an empty store: the snapshot, then
// the log of the same run of the node from the snapshot's commit on, in
// ticket order, up to the first missing ticket. A node started on an empty
// store does that before it loads (main.cpp), so a node whose disk was lost
// comes back with its sessions and every message it had acknowledged.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "src/config/config.h"
#include "src/durable/durable.h"

struct __natsConnection;
struct __jsCtx;

namespace petrel::persistence {
class Store;
}

namespace petrel::cluster {

class StoreReplicaStream final : public StoreReplica {
 public:
  // A stream message, at most (less when the server allows less than 1 MB).
  static constexpr size_t kRecordBytes = 512 * 1024;
  static constexpr uint64_t kMinLogBytes = 16ull << 20;      // log before a new snapshot, at least
  static constexpr size_t kMaxQueuedBytes = 64u << 20;       // batches waiting to be published
  static constexpr int kStallMs = 10000;                     // storing nothing this long: not live
  static constexpr int kWaitMs = 2000;                       // for one JetStream answer

  struct Counters {
    bool live = false;
    uint64_t snapshots = 0;       // completed in this run
    uint64_t snapshot_bytes = 0;  // of the last one
    uint64_t log_bytes = 0;       // in the log after it
    uint64_t records = 0;         // log records published in this run
    uint64_t stalls = 0;          // times it stopped being live
    uint64_t covered = 0;         // highest ticket it holds (live)
  };

  // The stream is made (if missing) over `stream_subjects` ("<name>.r.>");
  // `subject_prefix` is "<name>.r.<node>."; `at_least` the last ticket
  // submitted before this replica was attached (its first snapshot holds
  // it). `guard_empty`: the node started on an empty store without having
  // read its replica back (NATS did not answer): a replica found then is
  // left as it is, and this one stays off (logged). `moved` is called on
  // the replica's thread when covered() grew.
  StoreReplicaStream(__natsConnection* nc, std::string stream, std::string stream_subjects,
                     std::string subject_prefix, int replicas,
                     persistence::Store& store, uint64_t at_least, bool guard_empty, std::function<void()> moved);
  ~StoreReplicaStream() override;
  StoreReplicaStream(const StoreReplicaStream&) = delete;
  StoreReplicaStream& operator=(const StoreReplicaStream&) = delete;

  void start();
  // Publishes what waits (for up to about kWaitMs), then ends the thread.
  void stop();

  void add(uint64_t ticket, const persistence::Batch& batch) override;
  uint64_t covered() const override;
  void waitFor(uint64_t ticket, int ms) override;
  Counters counters() const;

 private:
  struct Pending {
    uint64_t ticket;
    std::string ops;
  };
  struct LogRecord {
    uint64_t seq;          // in the stream
    uint64_t last_ticket;  // its newest batch
    uint64_t bytes;
  };

  void run();
  bool open();
  // Publishes `body` on `subject` and waits for JetStream's answer, trying
  // again until kStallMs have passed; false then (or when stopping).
  bool store(const std::string& subject, const std::string& body, uint64_t& seq);
  // Publishes the batches waiting (those after skip_upto_); false on a stall.
  bool publishQueued();
  bool snapshot();
  void purge(const std::string& subject, uint64_t below);
  // Stops being live: what waits is dropped, a new snapshot will cover it.
  void stall(const char* why);
  void pause(int ms);
  // Every kMarkCheckMs: a mark of another node having taken this node's
  // sessions (adoption.h) is removed, and a new snapshot written.
  void checkMark();
  static constexpr int kMarkCheckMs = 5000;
  static constexpr int kMarkWaitMs = 300;
  std::chrono::steady_clock::time_point next_mark_check_{};

  __natsConnection* nc_;
  const std::string stream_;
  const std::string stream_subjects_;
  const std::string log_subject_;
  const std::string snap_subject_;
  const std::string end_subject_;
  const int replicas_;
  persistence::Store& store_;
  std::function<void()> moved_;
  __jsCtx* js_ = nullptr;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Pending> queue_;
  size_t queued_bytes_ = 0;
  bool accepting_ = true;     // add() queues (live, or a snapshot being taken)
  uint64_t dropped_upto_ = 0; // the last ticket not queued
  bool stopping_ = false;
  bool guard_empty_;
  bool refused_ = false;      // guard_empty_ found a replica: this one stays off
  Counters counters_;

  std::atomic<bool> live_{false};
  std::atomic<uint64_t> covered_{0};

  // The replica's thread alone.
  const uint64_t run_;
  uint32_t gen_ = 0;
  bool need_snapshot_ = true;
  uint64_t skip_upto_ = 0;       // batches up to this ticket are in the snapshot being taken
  uint64_t last_published_ = 0;  // ticket
  std::deque<LogRecord> log_;    // this run's log records since the last snapshot began
  uint64_t log_bytes_ = 0;
  uint64_t snapshot_bytes_ = 0;
  std::string last_error_;
  bool purge_failed_ = false;
  size_t record_bytes_ = kRecordBytes;
  std::thread thread_;
};

struct RestoreReport {
  bool found = false;        // the replica holds a snapshot of the node
  uint64_t run = 0;
  uint32_t gen = 0;
  uint64_t ticket = 0;       // the snapshot's
  uint64_t parts = 0;        // snapshot records
  uint64_t batches = 0;      // log batches applied after it
  uint64_t bytes = 0;        // read
  bool hole = false;         // the log stopped at a missing ticket (what came after was never acknowledged)
  bool unanswered = false;   // false returned because JetStream did not answer (worth asking again)
};

// Reads the replica of a node ("<name>.r.<node>." in `stream`) into
// `store` (empty), and waits for it to be committed. False with `err` on a
// JetStream error or a record it cannot read, or when nothing more could
// be read for `patience_ms`; found false when there is no replica of the
// node.
constexpr int kReadPatienceMs = 30000;
bool restoreReplica(__jsCtx* js, const std::string& stream, const std::string& subject_prefix,
                    persistence::Store& store, RestoreReport& report, std::string& err,
                    int patience_ms = kReadPatienceMs);

// At start-up, on an empty store (main.cpp): connects to the cluster's
// NATS (up to `wait_ms`) and restores the node's replica, asking again
// for up to kStartPatienceMs while NATS answers and JetStream does not.
// `checked` false: NATS or JetStream did not answer, nothing was read.
constexpr int kStartPatienceMs = 60000;
bool restoreAtStart(const ClusterConfig& cfg, persistence::Store& store, int wait_ms, bool& checked,
                    RestoreReport& report, std::string& err);

// Another node took the sessions of node "<prefix>" (adoption.h): a mark
// naming it (`by`) on "<prefix>a", then the node's replica purged, so that
// the node, back on its old disk or an empty one, does not serve them
// again. The mark stays until that node has let go (adoptedAtStart).
bool markAdopted(__jsCtx* js, const std::string& stream, const std::string& prefix, const std::string& by,
                 std::string& err);
// At start-up (main.cpp): when another node took this node's sessions
// while it was down, `let_go` empties its store of them (true when done),
// then the mark goes; `by` names that node. While NATS answers and
// JetStream does not, it asks again for up to kStartPatienceMs. `checked`
// false: NATS (up to `wait_ms`) or JetStream did not answer, nothing was
// read. False with `err` on failure.
bool adoptedAtStart(const ClusterConfig& cfg, int wait_ms, const std::function<bool()>& let_go, bool& checked,
                    std::string& by, std::string& err);

}  // namespace petrel::cluster
