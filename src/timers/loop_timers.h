// src/timers/loop_timers.h — drives a TimerQueue from one libuv loop with a
// single uv_timer_t, however many timers are armed; and PeriodicTimer, a
// timer that re-arms itself.
//
// The uv timer follows the queue's earliest deadline, lazily: arming a timer
// that becomes the earliest restarts it; a change that makes the earliest
// deadline *later* (the front cancelled, or re-armed later — what every
// keep-alive refresh does) leaves it alone, so it may wake once early, find
// nothing due, and restart for the real deadline. That trades one spurious
// wake-up for a uv_timer_start on every refresh of the front timer. When the
// queue empties the uv timer is stopped at once, so LoopTimers never keeps
// the loop alive without a deadline.
//
// Keeping in step needs no call from the user: LoopTimers listens to the
// queue (TimerQueue::setFrontChanged), so arming or cancelling through
// LoopTimers, through queue() or through Timer::cancel / ~Timer all work.
#pragma once

#include <uv.h>

#include <cstdint>

#include "src/timers/clock.h"
#include "src/timers/timer_queue.h"

namespace petrel {

class LoopTimers {
 public:
  explicit LoopTimers(uv_loop_t* loop);
  // The handle lives inside this object: close() it and let the loop run the
  // close callback (closed() turns true) before destroying it.
  ~LoopTimers();
  LoopTimers(const LoopTimers&) = delete;
  LoopTimers& operator=(const LoopTimers&) = delete;

  // Deadlines are on clock(): uv_now() of the loop.
  const Clock& clock() const { return clock_; }
  uint64_t now() const { return uv_now(loop_); }
  TimerQueue& queue() { return queue_; }

  void arm(Timer& t, uint64_t deadline_ms) { queue_.arm(t, deadline_ms); }
  // Arms `t` for delay_ms after the loop's current time.
  void armAfter(Timer& t, uint64_t delay_ms) { queue_.arm(t, saturatingAdd(now(), delay_ms)); }
  bool cancel(Timer& t) { return queue_.cancel(t); }
  size_t size() const { return queue_.size(); }

  // Brings the uv timer in step with the queue. Called automatically on every
  // change of the earliest deadline; public because it is idempotent and cheap
  // (a comparison when nothing is to be done).
  void sync();

  // Stops the uv timer and uv_closes the handle; the close callback runs on a
  // later loop turn. Timers still armed stay armed in queue() but no longer
  // fire. Idempotent.
  void close();
  bool closed() const { return closed_; }

 private:
  static void onUvTimer(uv_timer_t* handle);
  static void onClosed(uv_handle_t* handle);
  static void onFrontChanged(void* self) { static_cast<LoopTimers*>(self)->sync(); }

  uv_loop_t* loop_;
  LoopClock clock_;
  TimerQueue queue_;
  uv_timer_t handle_;
  bool uv_armed_ = false;      // handle_ is started
  uint64_t uv_deadline_ = 0;   // when it fires, on uv_now's time base
  bool firing_ = false;        // inside onUvTimer: sync once at the end
  bool closing_ = false;
  bool closed_ = false;
};

// A timer that fires every period_ms until stopped. Works on any TimerQueue
// and Clock (LoopTimers: `PeriodicTimer p(lt.queue(), lt.clock(), ...)`).
//
// Ticks keep to the schedule start + k * period while the callback keeps up;
// after a stall longer than a period the missed ticks are dropped (one tick,
// then the next one a period later) rather than fired in a burst.
//
// The same pattern by hand, for a Timer embedded elsewhere: in its callback,
// first re-arm it (queue.arm(t, now + period)), then do the work — re-arming
// first lets the work cancel it or destroy its owner. It cannot fire twice in
// one runDue (see TimerQueue::runDue).
class PeriodicTimer {
 public:
  using Callback = void (*)(PeriodicTimer&);

  PeriodicTimer(TimerQueue& queue, const Clock& clock, uint64_t period_ms, Callback cb,
                void* owner)
      : queue_(queue), clock_(clock), period_(period_ms == 0 ? 1 : period_ms), cb_(cb),
        owner_(owner), timer_(&PeriodicTimer::onFire, this) {}

  // First tick one period from now; restarts the schedule if running.
  void start() {
    next_ = saturatingAdd(clock_.monotonicMs(), period_);
    queue_.arm(timer_, next_);
  }
  void stop() { timer_.cancel(); }
  bool running() const { return timer_.armed(); }
  uint64_t period() const { return period_; }

  template <typename T>
  T* owner() const {
    return static_cast<T*>(owner_);
  }

 private:
  static void onFire(Timer& t) {
    PeriodicTimer& p = *t.owner<PeriodicTimer>();
    const uint64_t now = p.clock_.monotonicMs();
    p.next_ = saturatingAdd(p.next_, p.period_);
    if (p.next_ <= now) p.next_ = saturatingAdd(now, p.period_);
    // Re-armed before the callback, which may stop() it or destroy it.
    p.queue_.arm(p.timer_, p.next_);
    p.cb_(p);
  }

  TimerQueue& queue_;
  const Clock& clock_;
  uint64_t period_;
  Callback cb_;
  void* owner_;
  uint64_t next_ = 0;
  Timer timer_;
};

}  // namespace petrel
