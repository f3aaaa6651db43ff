// tests/unit/src/util/test_waker.cpp — Waker: threads that hand work over
// and wake a loop, with no wake-up lost however their wake() calls and the
// loop's look interleave, several wake-ups made while the loop is away
// seen in one call, and a close that lets the loop end.
#include <gtest/gtest.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "src/util/waker.h"

namespace petrel {
namespace {

constexpr uint64_t kGuardMs = 20000;  // the longest any wait may take

// A loop with a timer that ticks every 5 ms, so that a wait can give up.
// The tick does nothing else: only the Waker's callback takes work.
class WakerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    uv_timer_init(&loop_, &tick_);
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 5, 5);
  }
  void TearDown() override {
    if (waker_.active()) waker_.close();
    if (!tick_closed_) uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    while (uv_run(&loop_, UV_RUN_NOWAIT) != 0) {
    }
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }
  bool runUntil(const std::function<bool()>& done) {
    uv_update_time(&loop_);
    const uint64_t end = uv_now(&loop_) + kGuardMs;
    while (!done()) {
      if (uv_now(&loop_) >= end) return false;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }

  // What the callback does: takes everything handed over.
  static void take(void* self) {
    auto* t = static_cast<WakerTest*>(self);
    ++t->calls_;
    std::lock_guard<std::mutex> lock(t->mu_);
    t->taken_ += t->inbox_.size();
    t->inbox_.clear();
  }
  void hand(uint64_t v) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      inbox_.push_back(v);
    }
    waker_.wake();
  }

  uv_loop_t loop_;
  uv_timer_t tick_;
  bool tick_closed_ = false;
  Waker waker_;
  std::mutex mu_;
  std::vector<uint64_t> inbox_;  // under mu_
  size_t taken_ = 0;             // loop thread
  size_t calls_ = 0;             // loop thread
};

TEST_F(WakerTest, NoWakeUpIsLostWhileFourThreadsHandWorkOver) {
  ASSERT_EQ(waker_.init(&loop_, &WakerTest::take, this), 0);
  constexpr size_t kThreads = 4;
  constexpr size_t kEach = 50'000;
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (size_t t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &go] {
      while (!go.load()) std::this_thread::yield();
      for (size_t i = 0; i < kEach; ++i) {
        hand(t * kEach + i);
        // Now and then a pause, so that the loop finds the inbox empty,
        // goes back to waiting and must be woken again.
        if (i % 1000 == 999) std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    });
  }
  go = true;
  // Every item is taken by the callback (the tick takes nothing): an item
  // whose wake-up was lost would stay in the inbox.
  const bool all = runUntil([&] { return taken_ == kThreads * kEach; });
  for (auto& th : threads) th.join();
  ASSERT_TRUE(all) << taken_ << " of " << kThreads * kEach << " taken";
  EXPECT_GT(calls_, 1u);
  EXPECT_LT(calls_, kThreads * kEach) << "wake-ups made while the loop was away were not merged";
}

TEST_F(WakerTest, WakeUpsMadeWhileTheLoopIsAwayAreOneCall) {
  ASSERT_EQ(waker_.init(&loop_, &WakerTest::take, this), 0);
  std::thread t([this] {
    for (uint64_t i = 0; i < 1000; ++i) hand(i);
  });
  t.join();
  ASSERT_TRUE(runUntil([&] { return taken_ == 1000; }));
  EXPECT_EQ(calls_, 1u);
  // And once more, after the loop has looked.
  std::thread t2([this] { hand(1000); });
  t2.join();
  ASSERT_TRUE(runUntil([&] { return taken_ == 1001; }));
  EXPECT_EQ(calls_, 2u);
}

TEST_F(WakerTest, AfterCloseTheLoopCanEndAndWakeUpsDoNothing) {
  ASSERT_EQ(waker_.init(&loop_, &WakerTest::take, this), 0);
  EXPECT_TRUE(waker_.active());
  waker_.close();
  EXPECT_FALSE(waker_.active());
  std::thread t([this] { hand(1); });
  t.join();
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
  tick_closed_ = true;
  // Only the closes are left: the loop runs out.
  EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
  EXPECT_EQ(calls_, 0u);
}

}  // namespace
}  // namespace petrel
