// src/transport/ack_poller.h — a busy subscriber's acknowledgements are
// read between other connections' reads, not once per loop turn.
//
// A subscriber whose in-flight window is full gets no more QoS 1/2 messages
// until it acknowledges some. The loop reads its socket once per turn, like
// every other, so it gets at most one window per turn. When many publishers
// keep the loop busy (a fan-in: a thousand devices to one collector), a
// turn reads every publisher and grows long, and the collector gets one
// window per long turn while its queue grows. Once the broker cannot keep
// up, turns grow longer still and the collector's share falls further: 100
// messages per turn of a third of a second, with the broker sharing its
// core, in a measured run (bench/README.md, "Many publishers, one
// collector").
//
// So a connection of this loop whose window is full while messages wait in
// its queue is read again after other connections' reads in the same turn.
// What it has sent by then (its acknowledgements) is handled as a read from
// the loop would be: its window is refilled from the queue and its output
// written at once (Connection::onStreamInputDone). A read that finds
// nothing doubles the time before that connection is read so again (from
// kMinGapNs up to kMaxGapNs), and one that finds something, or a read of
// the loop's, brings it back to kMinGapNs: a collector that answers at once
// is read every few tens of microseconds of the turn, a slow client a few
// hundred times a second at most. A connection leaves the list once its
// window has room or nothing waits for it (its queue is empty, and it is no
// share group's member). At most kMaxConnections are on it (the few
// collectors of a fan-in, not every subscriber of a fan-out, which the loop
// reads in each turn anyway); when it is full, one that has not answered
// several reads in a row gives its place to a newcomer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace petrel {

class Connection;
struct BrokerStats;

class AckPoller {
 public:
  explicit AckPoller(BrokerStats& stats) : stats_(stats) {}

  static constexpr uint64_t kMinGapNs = 20'000;
  static constexpr uint64_t kMaxGapNs = 5'000'000;
  // Full list: an entry whose reads found nothing this many times in a row
  // (its gap has grown to this) gives its place to a new one.
  static constexpr uint64_t kEvictGapNs = kMinGapNs << 4;
  static constexpr size_t kMaxConnections = 16;

  // After a read of `c` has gone up through its stack and been handled.
  void onInputDone(Connection& c);
  // `c` is going away.
  void remove(Connection& c);

 private:
  struct Entry {
    Connection* c;
    uint64_t next_ns;  // not read again before
    uint64_t gap_ns;   // after a read that found nothing: doubled
  };
  // Its window is full and messages wait for it, on this loop.
  static bool waiting(const Connection& c);
  void drop(size_t i);

  std::vector<Entry> list_;
  uint64_t next_ns_ = 0;  // no pass before this
  bool polling_ = false;  // inside a pass: its own reads end here too
  BrokerStats& stats_;  // ack_reads_between_reads
};

}  // namespace petrel
