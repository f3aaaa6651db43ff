// src/timers/timer_queue.h — an intrusive min-heap of timers: the order in
// which the broker's deadlines fall due. It owns no time source and no I/O:
// the caller says what "now" is (runDue), which keeps it testable with a
// FakeClock; LoopTimers (loop_timers.h) drives it from a libuv loop.
//
// A Timer is embedded in its owner (a connection, a session), so arming one
// allocates nothing but the heap's slot. The heap holds (deadline, sequence,
// Timer*) entries, so comparisons while sifting never leave the heap's own
// array; each Timer knows its slot, which makes cancel and re-arm O(log n).
//
// Finding the owner: a Timer carries a `void* owner` set at construction (or
// with bind()); the callback gets the Timer& and reads `t.owner<Connection>()`.
// An explicit pointer rather than container-of arithmetic, because owners are
// not standard-layout types and offsetof on them is not portable C++.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace petrel {

class TimerQueue;

class Timer {
 public:
  // A plain function pointer, not std::function: 8 bytes, no allocation, and
  // a captureless lambda converts to it:
  //   Timer keep_alive_{[](Timer& t) { t.owner<Connection>()->onKeepAlive(); }, this};
  using Callback = void (*)(Timer&);

  Timer() = default;
  Timer(Callback cb, void* owner) : cb_(cb), owner_(owner) {}
  // Cancels the timer if it is armed, so an owner may die with its timers
  // armed (e.g. a connection freed while its keep-alive is pending).
  ~Timer();

  // The queue holds the Timer's address: it can be neither copied nor moved.
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Sets the callback and owner of a default-constructed timer; not while
  // armed.
  void bind(Callback cb, void* owner) {
    cb_ = cb;
    owner_ = owner;
  }

  template <typename T>
  T* owner() const {
    return static_cast<T*>(owner_);
  }
  void* ownerPtr() const { return owner_; }

  bool armed() const { return queue_ != nullptr; }
  // The deadline it is armed for; nullopt when it is not armed.
  std::optional<uint64_t> deadline() const;
  // Cancels it in whatever queue it is armed in; a no-op when not armed.
  void cancel();

 private:
  friend class TimerQueue;

  Callback cb_ = nullptr;
  void* owner_ = nullptr;
  TimerQueue* queue_ = nullptr;  // non-null exactly while armed
  uint32_t slot_ = 0;            // index in queue_->heap_ while armed
};

class TimerQueue {
 public:
  TimerQueue() = default;
  // Disarms the timers still armed (without firing them), so that a Timer
  // outliving its queue does not reach back into it from its destructor.
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  // Arms `t` to fire once at deadline_ms (monotonic ms, the caller's clock).
  // An armed timer is moved to the new deadline: it fires once, at the new
  // one. A timer armed in another queue is moved out of it first. Among
  // timers with the same deadline, the one armed (or re-armed) first fires
  // first. O(log n).
  //
  // From inside runDue(now): a deadline earlier than `now` is stored as `now`.
  // The timer is overdue either way, and it then sorts after every timer that
  // was already due when runDue started, which is what lets runDue stop at it
  // (see runDue).
  void arm(Timer& t, uint64_t deadline_ms);
  // Disarms `t` without firing it. Returns whether it was armed here. O(log n).
  bool cancel(Timer& t);
  bool armed(const Timer& t) const { return t.queue_ == this; }

  size_t size() const { return heap_.size(); }
  bool empty() const { return heap_.empty(); }
  // The earliest deadline armed; nullopt when none is.
  std::optional<uint64_t> nextDeadline() const {
    if (heap_.empty()) return std::nullopt;
    return heap_.front().deadline;
  }

  // Fires, in deadline order (ties: arming order), every timer that was armed
  // when the call began and whose deadline is <= now_ms. Returns how many
  // fired. A timer is disarmed before its callback runs, so the callback may
  // re-arm it, arm or cancel any other timer, or destroy the timer's owner
  // (the Timer is not touched after its callback returns).
  //
  // A timer armed or re-armed by a callback during this call never fires in
  // this call, even when its deadline is <= now_ms: it fires at the next
  // runDue. This is what keeps a timer that re-arms itself to "now" (or two
  // timers that arm each other) from looping forever; with LoopTimers the
  // next runDue comes on the next loop turn, after I/O has been polled.
  //
  // Not re-entrant: a callback must not call runDue.
  size_t runDue(uint64_t now_ms);

  // Called (with ctx) whenever nextDeadline() changes through arm() or
  // cancel() — including a cancel from ~Timer — but not during runDue, after
  // which the caller reads nextDeadline() itself. LoopTimers uses it to keep
  // its uv timer in step; one listener, nullptr to remove it.
  using FrontChanged = void (*)(void* ctx);
  void setFrontChanged(FrontChanged fn, void* ctx) {
    front_changed_ = fn;
    front_ctx_ = ctx;
  }

 private:
  friend class Timer;

  struct Entry {
    uint64_t deadline;
    uint64_t seq;  // arming order, for FIFO among equal deadlines
    Timer* timer;
  };
  static bool before(const Entry& a, const Entry& b) {
    return a.deadline < b.deadline || (a.deadline == b.deadline && a.seq < b.seq);
  }

  void place(size_t i, const Entry& e) {
    heap_[i] = e;
    e.timer->slot_ = static_cast<uint32_t>(i);
  }
  void siftUp(size_t i);
  void siftDown(size_t i);
  // Removes the entry at slot i, keeping the heap ordered. Does not touch the
  // removed Timer.
  void removeAt(size_t i);
  void notifyIfFrontChanged(std::optional<uint64_t> before);

  std::vector<Entry> heap_;
  uint64_t next_seq_ = 0;
  bool running_ = false;
  uint64_t running_now_ = 0;
  FrontChanged front_changed_ = nullptr;
  void* front_ctx_ = nullptr;
};

inline Timer::~Timer() {
  if (queue_) queue_->cancel(*this);
}

inline std::optional<uint64_t> Timer::deadline() const {
  if (!queue_) return std::nullopt;
  return queue_->heap_[slot_].deadline;
}

inline void Timer::cancel() {
  if (queue_) queue_->cancel(*this);
}

}  // namespace petrel
