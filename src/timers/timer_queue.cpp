// src/timers/timer_queue.cpp — the heap operations of TimerQueue: arm, cancel
// and the firing of due timers.
#include "src/timers/timer_queue.h"

#include <cassert>
#include <limits>

namespace petrel {

TimerQueue::~TimerQueue() {
  for (const Entry& e : heap_) e.timer->queue_ = nullptr;
}

void TimerQueue::siftUp(size_t i) {
  const Entry e = heap_[i];
  while (i > 0) {
    const size_t parent = (i - 1) / 2;
    if (!before(e, heap_[parent])) break;
    place(i, heap_[parent]);
    i = parent;
  }
  place(i, e);
}

void TimerQueue::siftDown(size_t i) {
  const size_t n = heap_.size();
  const Entry e = heap_[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= n) break;
    if (child + 1 < n && before(heap_[child + 1], heap_[child])) ++child;
    if (!before(heap_[child], e)) break;
    place(i, heap_[child]);
    i = child;
  }
  place(i, e);
}

void TimerQueue::removeAt(size_t i) {
  const size_t last = heap_.size() - 1;
  if (i != last) {
    place(i, heap_[last]);
    heap_.pop_back();
    // The entry moved in from the end may belong above or below slot i.
    if (i > 0 && before(heap_[i], heap_[(i - 1) / 2])) {
      siftUp(i);
    } else {
      siftDown(i);
    }
  } else {
    heap_.pop_back();
  }
}

void TimerQueue::notifyIfFrontChanged(std::optional<uint64_t> before_change) {
  if (running_ || !front_changed_) return;
  if (nextDeadline() != before_change) front_changed_(front_ctx_);
}

void TimerQueue::arm(Timer& t, uint64_t deadline_ms) {
  assert(t.cb_ && "a Timer needs a callback before it is armed");
  if (t.queue_ && t.queue_ != this) t.queue_->cancel(t);
  // See arm() in the header: clamping keeps every timer armed during runDue
  // behind the ones that were due when it started.
  if (running_ && deadline_ms < running_now_) deadline_ms = running_now_;

  const std::optional<uint64_t> front = nextDeadline();
  const Entry e{deadline_ms, next_seq_++, &t};
  if (t.queue_ == this) {
    // Re-arm in place: the entry moves up or down from where it is, no
    // removal and re-insertion.
    const size_t i = t.slot_;
    const bool earlier = before(e, heap_[i]);
    place(i, e);
    if (earlier) {
      siftUp(i);
    } else {
      siftDown(i);
    }
  } else {
    assert(heap_.size() < std::numeric_limits<uint32_t>::max());
    t.queue_ = this;
    heap_.push_back(e);
    t.slot_ = static_cast<uint32_t>(heap_.size() - 1);
    siftUp(heap_.size() - 1);
  }
  notifyIfFrontChanged(front);
}

bool TimerQueue::cancel(Timer& t) {
  if (t.queue_ != this) return false;
  const std::optional<uint64_t> front = nextDeadline();
  removeAt(t.slot_);
  t.queue_ = nullptr;
  notifyIfFrontChanged(front);
  return true;
}

size_t TimerQueue::runDue(uint64_t now_ms) {
  assert(!running_ && "TimerQueue::runDue is not re-entrant");
  // Every timer armed from here on gets a sequence number >= limit; see the
  // header for why those wait for the next call.
  const uint64_t limit = next_seq_;
  running_ = true;
  running_now_ = now_ms;
  // Leaves the queue usable (not stuck "running") if a callback throws.
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{running_};

  size_t fired = 0;
  while (!heap_.empty() && heap_.front().deadline <= now_ms && heap_.front().seq < limit) {
    Timer* t = heap_.front().timer;
    removeAt(0);
    t->queue_ = nullptr;
    ++fired;
    // Last use of t: the callback may free it.
    t->cb_(*t);
  }
  return fired;
}

}  // namespace petrel
