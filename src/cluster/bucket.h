// src/cluster/bucket.h — a JetStream key-value bucket that every node of
// the cluster writes and watches: the retained messages (keyed by topic)
// and the session registry (keyed by client id, the node a client last
// connected to).
//
// Each node puts its own entries and watches the whole bucket: what any
// node puts reaches every node, in the bucket's order, which is the same
// for all (Cluster decides what an entry means).
//
// This class is the JetStream side, on its own thread (JetStream calls
// block; the loop never waits for them): it opens (or creates) the bucket
// and a watch on it, makes the puts the loop asks for, and passes what the
// watch sees to the loop (take()) in order, between a SyncStart and a
// SyncEnd for the values the bucket held when the watch began. When the
// watch fails (the link or JetStream gone), it opens a new one, which
// begins with the bucket's values again.
//
// Puts are coalesced per key: under a flood of retained messages on one
// topic the bucket gets the latest, not every one between. They go out
// pipelined (thousands awaiting JetStream's answer at once), each batch
// answered before the next.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "src/util/keyed_hash.h"

struct __natsConnection;
struct __jsCtx;
struct __kvStore;
struct __kvWatcher;
struct __natsMsg;
struct jsPubAck;
struct jsPubAckErr;

namespace petrel::cluster {

class Bucket {
 public:
  struct Event {
    enum Kind : uint8_t {
      Put,        // key, value (a node's wire body)
      Delete,     // key: deleted or purged in the bucket (by an operator)
      SyncStart,  // a watch begins: the bucket's values follow,
      SyncEnd,    // and are all there
    } kind;
    std::string key;
    std::string value;
  };
  struct Counters {
    uint64_t put = 0;         // puts the bucket took
    uint64_t put_failed = 0;  // puts it refused (too large, a bad key)
    bool watching = false;    // the bucket is open and watched
  };

  // `wake` is called on the bucket's thread when events wait for take().
  // Events beyond `max_pending_bytes` wait in the bucket (the watch is read
  // no further) until the loop has taken them.
  // `what` names the bucket's use in the log ("retained messages").
  Bucket(__natsConnection* nc, std::string bucket, std::string what, std::string description, int replicas,
         uint64_t max_pending_bytes, std::function<void()> wake);
  ~Bucket();
  Bucket(const Bucket&) = delete;
  Bucket& operator=(const Bucket&) = delete;

  void start();
  // Makes the puts still waiting (for up to about two seconds while the
  // link is down), then ends the thread.
  void stop();

  // The watch is to be opened again (a new one starts with the bucket's
  // values): after the link came back, or when the client says the
  // server's heartbeats stopped. Any thread. It is opened again
  // kRewatchDelayMs later: at those moments the NATS client remakes the
  // watch's consumer by itself, on a thread of its own, and stopping the
  // watch while it does reads a string the client frees (seen under
  // AddressSanitizer in kvWatcher_Stop, libnats 3.4.1).
  static constexpr int64_t kRewatchDelayMs = 2000;
  void rewatch();

  // The loop's side. `value` replaces a put of `key` not yet made. With
  // `only_new` the bucket takes it only while it holds nothing for `key`
  // (JetStream's expected-no-message check): a value some node put there
  // meanwhile stays, and the watch brings it.
  void put(const std::string& key, std::string value, bool only_new = false);
  // The events since the last take(), in order, appended to `out`.
  void take(std::vector<Event>& out);
  Counters counters() const;

  const std::string& name() const { return bucket_; }

 private:
  // JetStream's answer to a put (the client's thread).
  struct AckSink {
    std::mutex mu;
    Bucket* bucket = nullptr;  // null once stopped
  };
  static void onAck(__jsCtx* js, __natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure);

  void run();
  bool open();
  void close();
  // The puts waiting; false when one must be tried again later.
  bool makePuts(bool last);
  void readWatch();
  void push(Event e);
  // The watch is behind the bucket and has not moved for a while (the
  // server it read from went, and the client has not noticed yet).
  bool watchStuck();
  // Sleeps up to `ms`, less when stopping.
  void pause(int ms);

  __natsConnection* nc_;
  const std::string bucket_;
  const std::string what_;
  const std::string description_;
  const int replicas_;
  const uint64_t max_bytes_;
  std::function<void()> wake_;
  __jsCtx* js_ = nullptr;
  __kvStore* kv_ = nullptr;
  __kvWatcher* watcher_ = nullptr;
  std::shared_ptr<AckSink> acks_;
  std::string last_error_;  // logged once, until it changes or the bucket opens
  uint64_t last_revision_ = 0;     // of the last entry the watch gave
  uint64_t checked_revision_ = 0;  // last_revision_ at the last check
  int behind_checks_ = 0;          // checks in a row that found the watch behind, not moving
  std::chrono::steady_clock::time_point next_check_{};

  mutable std::mutex mu_;
  std::condition_variable cv_;
  struct Put {
    std::string value;
    bool only_new = false;
  };
  std::unordered_map<std::string, Put, KeyedHash, std::equal_to<>> puts_;  // by key: the latest value
  std::vector<Event> events_;
  uint64_t event_bytes_ = 0;
  Counters counters_;
  bool stopping_ = false;
  std::atomic<int64_t> rewatch_at_{0};  // steady clock ms; 0: none asked
  std::thread thread_;
};

}  // namespace petrel::cluster
