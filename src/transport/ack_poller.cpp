#include "src/transport/ack_poller.h"

#include <uv.h>

#include "src/metrics/stats.h"
#include "src/sessions/session.h"
#include "src/transport/connection.h"

namespace petrel {

bool AckPoller::waiting(const Connection& c) {
  const Session* s = c.session;
  // A share group's member: the group's queue waits for its window.
  return s && c.pollable() && s->windowHolds();
}

void AckPoller::drop(size_t i) {
  list_[i].c->in_ack_poller = false;
  list_[i] = list_.back();
  list_.pop_back();
}

void AckPoller::onInputDone(Connection& c) {
  if (polling_) return;
  if (!c.in_ack_poller && list_.empty() && !waiting(c)) return;
  const uint64_t now = uv_hrtime();
  if (c.in_ack_poller) {
    for (Entry& e : list_) {
      if (e.c == &c) {  // the loop has just read it
        e.next_ns = now + kMinGapNs;
        e.gap_ns = kMinGapNs;
      }
    }
  } else if (waiting(c)) {
    if (list_.size() >= kMaxConnections) {
      // Full: the connection that has gone longest without answering
      // makes room, if it has missed several reads in a row (slow clients
      // with full windows must not keep a collector out).
      size_t slowest = 0;
      for (size_t i = 1; i < list_.size(); ++i)
        if (list_[i].gap_ns > list_[slowest].gap_ns) slowest = i;
      if (list_[slowest].gap_ns >= kEvictGapNs) drop(slowest);
    }
    if (list_.size() < kMaxConnections) {
      c.in_ack_poller = true;
      list_.push_back({&c, now + kMinGapNs, kMinGapNs});
    }
  }
  if (now < next_ns_) return;
  next_ns_ = now + kMinGapNs;
  polling_ = true;
  for (size_t i = 0; i < list_.size();) {
    Entry& e = list_[i];
    if (!waiting(*e.c)) {
      drop(i);
      continue;
    }
    if (now >= e.next_ns) {
      if (e.c->pollInput()) {
        e.gap_ns = kMinGapNs;
        ++stats_.ack_reads_between_reads;
      } else if (e.gap_ns < kMaxGapNs) {
        e.gap_ns *= 2;
      }
      e.next_ns = now + e.gap_ns;
    }
    ++i;
  }
  polling_ = false;
}

void AckPoller::remove(Connection& c) {
  if (!c.in_ack_poller) return;
  for (size_t i = 0; i < list_.size(); ++i) {
    if (list_[i].c == &c) {
      drop(i);
      return;
    }
  }
}

}  // namespace petrel
