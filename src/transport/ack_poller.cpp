#include "src/transport/ack_poller.h"

#include <uv.h>

#include "src/metrics/stats.h"
#include "src/sessions/session.h"
#include "src/transport/connection.h"

namespace petrel {

bool AckPoller::waiting(const Connection& c) {
  const Session* s = c.session;
  return s && c.pollable() && s->windowFree() == 0 && s->queuedCount() > 0;
}

void AckPoller::drop(size_t i) {
  list_[i].c->in_ack_poller = false;
  list_[i] = list_.back();
  list_.pop_back();
}

void AckPoller::onInputDone(Connection& c) {
  if (polling_) return;
  if (!c.in_ack_poller) {
    if (list_.size() < kMaxConnections && waiting(c)) {
      c.in_ack_poller = true;
      list_.push_back({&c, uv_hrtime()});
    }
    if (list_.empty()) return;
  }
  const uint64_t now = uv_hrtime();
  if (c.in_ack_poller) {
    for (Entry& e : list_)
      if (e.c == &c) e.answered_ns = now;  // the loop has just read it
  }
  if (now < next_ns_) return;
  next_ns_ = now + kGapNs;
  polling_ = true;
  for (size_t i = 0; i < list_.size();) {
    Entry& e = list_[i];
    if (!waiting(*e.c) || now - e.answered_ns > kIdleNs) {
      drop(i);
      continue;
    }
    if (e.c != &c && e.c->pollInput()) {
      e.answered_ns = now;
      ++stats_.ack_reads_between_reads;
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
