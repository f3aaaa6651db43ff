// LoopTimers on a real libuv loop: timers fire in order and not before their
// deadline, cancel and re-arm reach the uv timer, and the uv timer never
// keeps the loop alive when nothing is armed. Every loop run is bounded by an
// unreferenced guard timer, so a broken test fails instead of hanging.
#include <gtest/gtest.h>
#include <uv.h>

#include <memory>
#include <vector>

#include "src/timers/loop_timers.h"

namespace petrel {
namespace {

constexpr uint64_t kGuardMs = 5000;
// Far enough that the loop waiting for it would trip the bounds below.
constexpr uint64_t kFarMs = 10'000;

struct Fired {
  int id;
  uint64_t at;        // uv_now() when it fired
  uint64_t deadline;  // what it was armed for
};

struct Hit {
  int id = 0;
  LoopTimers* lt = nullptr;
  std::vector<Fired>* log = nullptr;
  uint64_t deadline = 0;
  // Armed by this one's callback, delay_ms later, when set.
  Hit* next = nullptr;
  uint64_t next_delay_ms = 0;
  Timer timer{&Hit::onFire, this};

  void armAfter(uint64_t delay_ms) {
    deadline = lt->now() + delay_ms;
    lt->arm(timer, deadline);
  }
  static void onFire(Timer& t) {
    Hit& h = *t.owner<Hit>();
    h.log->push_back({h.id, h.lt->now(), h.deadline});
    if (h.next) h.next->armAfter(h.next_delay_ms);
  }
};

class LoopTimersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    uv_timer_init(&loop_, &guard_);
    guard_.data = this;
    uv_timer_start(&guard_, &LoopTimersTest::onGuard, kGuardMs, 0);
    // The guard must not itself keep the loop alive: that is under test.
    uv_unref(reinterpret_cast<uv_handle_t*>(&guard_));
    lt_ = std::make_unique<LoopTimers>(&loop_);
  }

  void TearDown() override {
    lt_->close();
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_TRUE(lt_->closed());
    lt_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }

  static void onGuard(uv_timer_t* t) {
    static_cast<LoopTimersTest*>(t->data)->guard_fired_ = true;
    uv_stop(t->loop);
  }

  Hit& hit(int id) {
    hits_.push_back(std::make_unique<Hit>());
    Hit& h = *hits_.back();
    h.id = id;
    h.lt = lt_.get();
    h.log = &log_;
    return h;
  }

  // Runs the loop until nothing keeps it alive; returns the ms it took.
  uint64_t runLoop() {
    uv_update_time(&loop_);
    const uint64_t start = uv_now(&loop_);
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_FALSE(guard_fired_) << "the loop did not end by itself";
    uv_update_time(&loop_);
    return uv_now(&loop_) - start;
  }

  std::vector<int> firedIds() const {
    std::vector<int> ids;
    for (const Fired& f : log_) ids.push_back(f.id);
    return ids;
  }
  void expectNoneEarly() const {
    for (const Fired& f : log_) EXPECT_GE(f.at, f.deadline) << "timer " << f.id;
  }

  uv_loop_t loop_;
  uv_timer_t guard_;
  bool guard_fired_ = false;
  std::unique_ptr<LoopTimers> lt_;
  std::vector<Fired> log_;
  // Outlive lt_ (TearDown resets it): the queue's destructor disarms them.
  std::vector<std::unique_ptr<Hit>> hits_;
};

TEST_F(LoopTimersTest, TimersFireInOrderAndTheLoopEnds) {
  hit(20).armAfter(20);
  hit(5).armAfter(5);
  hit(10).armAfter(10);
  EXPECT_EQ(lt_->size(), 3u);
  const uint64_t took = runLoop();
  EXPECT_EQ(firedIds(), (std::vector<int>{5, 10, 20}));
  expectNoneEarly();
  EXPECT_LT(took, 2000u);
  EXPECT_EQ(lt_->size(), 0u);
}

TEST_F(LoopTimersTest, CancelPreventsFiring) {
  Hit& a = hit(1);
  Hit& b = hit(2);
  Hit& c = hit(3);
  a.armAfter(5);
  b.armAfter(10);
  c.armAfter(kFarMs);
  EXPECT_TRUE(lt_->cancel(a.timer));  // the earliest
  c.timer.cancel();                   // the latest, through the Timer
  runLoop();
  EXPECT_EQ(firedIds(), (std::vector<int>{2}));
  expectNoneEarly();
}

TEST_F(LoopTimersTest, RearmEarlierFiresAtTheNewDeadline) {
  Hit& a = hit(1);
  a.armAfter(kFarMs);
  a.armAfter(5);
  const uint64_t took = runLoop();
  EXPECT_EQ(firedIds(), (std::vector<int>{1}));
  expectNoneEarly();
  EXPECT_LT(took, 2000u);
}

TEST_F(LoopTimersTest, RearmLaterIsNotFiredEarly) {
  // The uv timer is left at the old (earlier) deadline on purpose; its early
  // wake-up must fire nothing and restart for the new deadline.
  Hit& a = hit(1);
  a.armAfter(2);
  a.armAfter(15);
  runLoop();
  EXPECT_EQ(firedIds(), (std::vector<int>{1}));
  expectNoneEarly();
}

TEST_F(LoopTimersTest, CancellingTheFrontStillFiresTheRest) {
  Hit& a = hit(1);
  Hit& b = hit(2);
  a.armAfter(3);
  b.armAfter(15);
  a.timer.cancel();
  runLoop();
  EXPECT_EQ(firedIds(), (std::vector<int>{2}));
  expectNoneEarly();
}

TEST_F(LoopTimersTest, NoArmedTimerDoesNotKeepTheLoopAlive) {
  Hit& a = hit(1);
  a.armAfter(kFarMs);
  lt_->cancel(a.timer);
  EXPECT_LT(runLoop(), 2000u);
  EXPECT_TRUE(log_.empty());
  // Destroying the last armed timer's owner stops the uv timer as well.
  {
    Hit gone;
    gone.lt = lt_.get();
    gone.log = &log_;
    gone.armAfter(kFarMs);
  }
  EXPECT_LT(runLoop(), 2000u);
  EXPECT_TRUE(log_.empty());
}

TEST_F(LoopTimersTest, CallbacksArmFurtherTimers) {
  Hit& a = hit(1);
  Hit& b = hit(2);
  Hit& c = hit(3);
  a.next = &b;
  a.next_delay_ms = 3;
  b.next = &c;
  b.next_delay_ms = 0;  // due at once: fires on a later loop turn
  a.armAfter(2);
  runLoop();
  EXPECT_EQ(firedIds(), (std::vector<int>{1, 2, 3}));
  expectNoneEarly();
}

TEST_F(LoopTimersTest, PeriodicTimerTicksUntilStopped) {
  struct Ticks {
    LoopTimers* lt;
    std::vector<uint64_t> at;
  } ticks{lt_.get(), {}};
  PeriodicTimer p(lt_->queue(), lt_->clock(), 2, [](PeriodicTimer& self) {
    Ticks& t = *self.owner<Ticks>();
    t.at.push_back(t.lt->now());
    if (t.at.size() == 5) self.stop();
  }, &ticks);
  uv_update_time(&loop_);
  const uint64_t start = uv_now(&loop_);
  p.start();
  runLoop();
  ASSERT_EQ(ticks.at.size(), 5u);
  EXPECT_FALSE(p.running());
  // Tick k is due at start + 2k (a late tick does not push the later ones).
  for (size_t i = 0; i < ticks.at.size(); ++i) EXPECT_GE(ticks.at[i], start + 2 * (i + 1)) << i;
}

TEST_F(LoopTimersTest, CloseStopsAndReleasesTheHandle) {
  Hit& a = hit(1);
  a.armAfter(kFarMs);
  lt_->close();
  lt_->close();  // idempotent
  EXPECT_LT(runLoop(), 2000u);
  EXPECT_TRUE(lt_->closed());
  EXPECT_TRUE(log_.empty());
}

}  // namespace
}  // namespace petrel
