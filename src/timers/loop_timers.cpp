// src/timers/loop_timers.cpp — the uv_timer_t behind LoopTimers: started for
// the earliest deadline, fired, and restarted for the next one.
#include "src/timers/loop_timers.h"

#include <cassert>

namespace petrel {

LoopTimers::LoopTimers(uv_loop_t* loop) : loop_(loop), clock_(loop) {
  uv_timer_init(loop_, &handle_);
  handle_.data = this;
  queue_.setFrontChanged(&LoopTimers::onFrontChanged, this);
}

LoopTimers::~LoopTimers() {
  // libuv still links an unclosed handle into the loop; freeing it here
  // would leave the loop with a dangling pointer.
  assert(closed_ && "LoopTimers destroyed before its handle was closed");
  queue_.setFrontChanged(nullptr, nullptr);
}

void LoopTimers::sync() {
  if (firing_ || closing_) return;
  const std::optional<uint64_t> next = queue_.nextDeadline();
  if (!next) {
    // Nothing armed: a started handle would keep the loop alive for nothing.
    if (uv_armed_) {
      uv_timer_stop(&handle_);
      uv_armed_ = false;
    }
    return;
  }
  // Already set to fire at or before the earliest deadline: at worst it wakes
  // early once and comes back here (see the header).
  if (uv_armed_ && uv_deadline_ <= *next) return;
  const uint64_t now = uv_now(loop_);
  const uint64_t timeout = *next > now ? *next - now : 0;
  uv_timer_start(&handle_, &LoopTimers::onUvTimer, timeout, 0);
  uv_armed_ = true;
  uv_deadline_ = now + timeout;
}

void LoopTimers::onUvTimer(uv_timer_t* handle) {
  LoopTimers& self = *static_cast<LoopTimers*>(handle->data);
  // A one-shot uv timer is stopped once it has fired.
  self.uv_armed_ = false;
  self.firing_ = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{self.firing_};
  self.queue_.runDue(uv_now(self.loop_));
  self.firing_ = false;
  // Callbacks may have armed and cancelled freely; one restart for all.
  self.sync();
}

void LoopTimers::close() {
  if (closing_) return;
  closing_ = true;
  queue_.setFrontChanged(nullptr, nullptr);
  uv_timer_stop(&handle_);
  uv_armed_ = false;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_), &LoopTimers::onClosed);
}

void LoopTimers::onClosed(uv_handle_t* handle) {
  static_cast<LoopTimers*>(handle->data)->closed_ = true;
}

}  // namespace petrel
