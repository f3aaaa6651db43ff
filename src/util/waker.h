// src/util/waker.h — wakes a libuv loop from another thread: what
// uv_async_t does, without its spin.
//
// libuv 1.44 (Debian 12) marks an async handle busy while the sending
// thread is inside its write to the loop's eventfd, and the woken loop
// spins (pause, then sched_yield) until that write is done before it runs
// the callback. With worker loops the main loop is woken by every worker
// and each worker by the main loop, so a loop often found another thread
// inside its send: in a fan-in with two worker loops on two cores, 5 % of
// the main loop's samples and 3-10 % of each worker's were that spin
// (bench/README.md, "Waking a loop without a spin").
//
// A Waker has an eventfd of its own, watched by a uv_poll_t on the loop it
// wakes, and a flag that coalesces wake-ups: wake() writes to the eventfd
// only when it is the first to raise the flag since the loop last looked.
// The loop reads the eventfd, lowers the flag, then runs the callback, in
// that order: whatever a thread handed over before its wake() is seen by
// that callback or by the next one, and no wake-up is lost (a thread that
// finds the flag raised knows the loop has yet to lower it and look).
#pragma once

#include <uv.h>

#include <atomic>

namespace petrel {

class Waker {
 public:
  using Callback = void (*)(void* arg);

  Waker() = default;
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;
  // The eventfd is closed here: after close() has been seen through (the
  // loop has run the handle's close), and when no thread can wake() any
  // more.
  ~Waker();

  // On the loop's thread. 0, or a libuv error (nothing to close then).
  int init(uv_loop_t* loop, Callback cb, void* arg);
  // Any thread, any time between init() and the destructor: the callback
  // runs on the loop soon after (once for several wake-ups made before it
  // runs). A wake-up after close() does nothing.
  void wake();
  // On the loop's thread: the loop stops watching (its handle closes with
  // the loop's next turn, as uv_close does).
  void close();
  bool active() const { return fd_ >= 0 && !closed_; }

 private:
  static void onReadable(uv_poll_t* h, int status, int events);

  uv_poll_t poll_;
  int fd_ = -1;
  bool closed_ = false;
  std::atomic<bool> raised_{false};
  Callback cb_ = nullptr;
  void* arg_ = nullptr;
};

}  // namespace petrel
