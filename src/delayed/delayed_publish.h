// src/delayed/delayed_publish.h — delayed publish: a PUBLISH to
// `$delayed/<N>/<topic>` is kept until it is due and then published to
// <topic> as if its client had published it then (delayed_topic.h has the
// topic form).
//
// Owns: the pending delayed messages -- in the store (persistence on: a
// record per message in its own table, keyed by due time and message id,
// written in the batch of the PUBLISH, so its acknowledgement waits for the
// commit), the RAM window of the earliest ones (delayed_window.h), the one
// timer armed for the earliest, and the counters shown in $SYS. Without
// persistence every pending message is in RAM, bounded by
// delayed.max_pending.
//
// Firing writes the deletion of the record into the same store batch as
// the writes its routing makes (queue entries, the retained slot), so a
// message fires at most once across a crash: either both are committed or
// neither is, and it fires again after the restart.
//
// May call: Durable (store batch and reads), Router (retain, route), the
// timer facility and the clock, Config.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "mqtt/protocol.h"
#include "src/config/config.h"
#include "src/delayed/delayed_window.h"
#include "src/routing/message.h"
#include "src/timers/timer_queue.h"

namespace petrel {

class Clock;
class Durable;
class LoopTimers;
class Router;

class DelayedPublish {
 public:
  // Due entries fired in one loop turn at most; the rest go on the next
  // turn, after I/O.
  static constexpr size_t kFirePerTurn = 1000;

  struct Parts {
    const Config& cfg;
    const Clock& clock;
    LoopTimers& timers;
    Durable& durable;
    Router& router;
  };
  explicit DelayedPublish(const Parts& p);
  DelayedPublish(const DelayedPublish&) = delete;
  DelayedPublish& operator=(const DelayedPublish&) = delete;

  bool enabled() const { return cfg_.delayed.enabled; }
  // A topic this part handles: `$delayed/...` while delayed.enabled.
  bool claims(std::string_view topic) const;
  // Reads `$delayed/<N>/<topic>`: on Success `topic` becomes the target
  // topic and `due_ms` its due time on the clock's steady wall clock
  // (clock.h: N seconds from now are N seconds of elapsed time; a Unix time
  // is read against the wall clock as it is now). TopicNameInvalid (bad N or
  // target) and QuotaExceeded (beyond delayed.max_delay) are counted as
  // refused.
  mqtt::Reason resolve(std::string& topic, int64_t& due_ms);
  // Keeps `m` (addressed to its target, with its store id) until `due_ms`:
  // written to the store's batch, so the publisher's acknowledgement waits
  // for that commit. QuotaExceeded (counted as refused) when
  // delayed.max_pending are pending or the store is full.
  mqtt::Reason schedule(const MessagePtr& m, int64_t due_ms);

  // Start-up: how many wait in the store, and the first window; arms the
  // timer (what fell due while the broker was down fires at once).
  void load();
  // The store has committed every batch up to `done`.
  void afterCommit(uint64_t done);

  uint64_t pending() const { return window_.pending(); }
  uint64_t fired() const { return fired_; }
  uint64_t dropped() const { return dropped_; }
  uint64_t refused() const { return refused_; }
  const DelayedWindow& window() const { return window_; }

  // Fires what is due (up to kFirePerTurn) and arms the timer for the rest:
  // the timer's work, public for tests.
  void fireDue();

 private:
  using Key = persistence::DelayedKey;
  static void onTimer(Timer& t);
  // `wall_ms`: the wall clock, for the message's own expiry.
  void fire(const Key& k, MessagePtr m, int64_t wall_ms);
  // Arms the timer for the earliest entry (refilling the window first).
  void arm();
  void refill();

  const Config& cfg_;
  const Clock& clock_;
  LoopTimers& timers_;
  Durable& durable_;
  Router& router_;
  DelayedWindow window_;
  Timer timer_;
  uint64_t ram_seq_ = 0;  // keys' second half without a store (no message ids)
  uint64_t fired_ = 0;
  uint64_t dropped_ = 0;  // expired when due, or unreadable
  uint64_t refused_ = 0;

  // Store writes not committed yet, which a refill (a read of committed
  // state) must make up for: entries written (with their message) and
  // entries fired, with the ticket of their batch.
  std::deque<std::pair<uint64_t, Key>> unsynced_order_;
  std::map<Key, MessagePtr> unsynced_;
  std::deque<std::pair<uint64_t, Key>> fired_order_;
  std::set<Key> fired_unsynced_;
};

}  // namespace petrel
