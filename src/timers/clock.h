// src/timers/clock.h — the two clocks every deadline of the broker is measured
// against, behind one interface so that timer logic can be tested with a
// FakeClock instead of sleeping.
//
//  - monotonicMs(): milliseconds on a clock that never jumps; every timeout
//    (keep alive, handshakes, linger, will delay) is a deadline on it.
//  - wallMs(): milliseconds since the Unix epoch; only for deadlines that are
//    persisted and must survive a restart (session expiry, message expiry).
//    A persisted wall deadline is turned into a monotonic one with
//    monotonicDeadlineFromWall() before it is armed, so that a wall clock
//    step (NTP, an operator) never fires or delays a timer already armed.
//  - steadyWallMs(): milliseconds since the Unix epoch that never step: the
//    wall clock as read when the clock was made, advanced by the monotonic
//    clock since (it equals the wall clock until the first step).
//    wallStepMs() is how far the wall clock has been set away from it since.
//    Delayed publish keeps its due times on it, so that a delay of N seconds
//    is N seconds of elapsed time however the system clock is set meanwhile.
#pragma once

#include <sys/time.h>
#include <time.h>
#include <uv.h>

#include <cstdint>
#include <limits>

namespace petrel {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual uint64_t monotonicMs() const = 0;
  virtual int64_t wallMs() const = 0;
  virtual int64_t steadyWallMs() const = 0;
  // wallMs() - steadyWallMs(), both read at one instant (the same for every
  // call between two steps, not one millisecond more or less).
  virtual int64_t wallStepMs() const = 0;
};

// The loop's clock. monotonicMs() is uv_now(): the loop time cached at the
// start of the loop turn, the same time base libuv's own timers use, so a
// deadline computed from it agrees with when a uv_timer_t fires.
class LoopClock final : public Clock {
 public:
  explicit LoopClock(uv_loop_t* loop) : loop_(loop), steady_base_ns_(wallMinusMonotonicNs()) {}
  uint64_t monotonicMs() const override { return uv_now(loop_); }
  int64_t wallMs() const override {
    timeval tv;
    gettimeofday(&tv, nullptr);
    return static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
  }
  // Read now, not at the start of the loop turn: a due time computed from
  // it is not early by the time the turn has taken so far.
  int64_t steadyWallMs() const override { return (steady_base_ns_ + nowNs(CLOCK_MONOTONIC)) / 1'000'000; }
  // In nanoseconds, rounded to the nearest millisecond, so that it does not
  // flicker between two values as truncated milliseconds would.
  int64_t wallStepMs() const override {
    const int64_t step = wallMinusMonotonicNs() - steady_base_ns_;
    return (step >= 0 ? step + 500'000 : step - 500'000) / 1'000'000;
  }

 private:
  static int64_t nowNs(clockid_t id) {
    timespec ts;
    clock_gettime(id, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
  }
  // The wall clock read between two reads of the monotonic one, taken again
  // when the thread was held up between them (more than 20 µs apart).
  static int64_t wallMinusMonotonicNs() {
    int64_t diff = 0;
    for (int i = 0; i < 8; ++i) {
      const int64_t before = nowNs(CLOCK_MONOTONIC);
      const int64_t wall = nowNs(CLOCK_REALTIME);
      const int64_t after = nowNs(CLOCK_MONOTONIC);
      diff = wall - before / 2 - after / 2;
      if (after - before < 20'000) break;
    }
    return diff;
  }
  uv_loop_t* loop_;
  int64_t steady_base_ns_;  // the wall clock minus the monotonic one, when made
};

// A clock that moves only when told to, for tests. The wall clock starts at
// an arbitrary date (2023-11-14) so that "0" is never mistaken for a real
// time; both clocks can be set independently to model a wall clock step.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(uint64_t mono_ms = 0, int64_t wall_ms = 1'700'000'000'000)
      : mono_(mono_ms), wall_(wall_ms), steady_base_(wall_ms - static_cast<int64_t>(mono_ms)) {}
  uint64_t monotonicMs() const override { return mono_; }
  int64_t wallMs() const override { return wall_; }
  int64_t steadyWallMs() const override { return steady_base_ + static_cast<int64_t>(mono_); }
  int64_t wallStepMs() const override { return wall_ - steadyWallMs(); }

  // Advances both clocks, as real time passing does.
  void advance(uint64_t ms) {
    mono_ += ms;
    wall_ += static_cast<int64_t>(ms);
  }
  void setMonotonic(uint64_t ms) { mono_ = ms; }
  // A step of the wall clock: steadyWallMs() does not follow it.
  void setWall(int64_t ms) { wall_ = ms; }

 private:
  uint64_t mono_;
  int64_t wall_;
  int64_t steady_base_;
};

// now + delay without wrapping: a "never" delay (UINT64_MAX) stays at the far
// end instead of landing in the past.
inline uint64_t saturatingAdd(uint64_t a, uint64_t b) {
  return b > std::numeric_limits<uint64_t>::max() - a ? std::numeric_limits<uint64_t>::max() : a + b;
}

// The monotonic deadline for a persisted wall-clock deadline: the time left
// on the wall clock, counted from now on the monotonic clock. A deadline that
// has already passed (e.g. it expired while the broker was down) is due now.
inline uint64_t monotonicDeadlineFromWall(const Clock& clock, int64_t wall_deadline_ms) {
  const uint64_t now = clock.monotonicMs();
  const int64_t wall_now = clock.wallMs();
  if (wall_deadline_ms <= wall_now) return now;
  // Both are int64_t and deadline > now, so the difference fits in uint64_t.
  const uint64_t left = static_cast<uint64_t>(wall_deadline_ms) - static_cast<uint64_t>(wall_now);
  return saturatingAdd(now, left);
}

}  // namespace petrel
