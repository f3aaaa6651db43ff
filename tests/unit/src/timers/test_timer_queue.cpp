// TimerQueue with a FakeClock: firing order, FIFO among equal deadlines,
// cancel and re-arm, callbacks that change the queue while it fires, timers
// destroyed while armed, and order at scale.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <random>
#include <vector>

#include "src/timers/clock.h"
#include "src/timers/loop_timers.h"
#include "src/timers/timer_queue.h"

namespace petrel {
namespace {

// An owner that records into a shared log when its timer fires.
struct Recorder;
struct Owner {
  int id = 0;
  Recorder* rec = nullptr;
  Timer timer{&Owner::onFire, this};
  static void onFire(Timer& t);
};

struct Recorder {
  std::vector<int> fired;
  // Run by the owner with this id when it fires, before it is logged.
  std::function<void(Owner&)> action;
  int action_id = -1;
};

void Owner::onFire(Timer& t) {
  Owner& o = *t.owner<Owner>();
  Recorder& r = *o.rec;
  r.fired.push_back(o.id);
  if (o.id == r.action_id && r.action) r.action(o);
}

struct Fixture {
  FakeClock clock;
  TimerQueue q;
  Recorder rec;
  std::vector<std::unique_ptr<Owner>> owners;
  Owner& make(int id) {
    owners.push_back(std::make_unique<Owner>());
    owners.back()->id = id;
    owners.back()->rec = &rec;
    return *owners.back();
  }
  size_t advanceTo(uint64_t t) {
    clock.setMonotonic(t);
    return q.runDue(clock.monotonicMs());
  }
};

TEST(TimerQueue, FiresInDeadlineOrderAndOnlyWhenDue) {
  Fixture f;
  f.q.arm(f.make(30).timer, 30);
  f.q.arm(f.make(10).timer, 10);
  f.q.arm(f.make(20).timer, 20);
  EXPECT_EQ(f.q.size(), 3u);
  EXPECT_EQ(f.advanceTo(9), 0u);
  EXPECT_TRUE(f.rec.fired.empty());
  EXPECT_EQ(f.advanceTo(20), 2u);  // deadline <= now fires
  EXPECT_EQ(f.rec.fired, (std::vector<int>{10, 20}));
  EXPECT_EQ(f.advanceTo(1000), 1u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{10, 20, 30}));
  EXPECT_TRUE(f.q.empty());
  EXPECT_FALSE(f.owners[0]->timer.armed());
}

TEST(TimerQueue, EqualDeadlinesFireInArmingOrder) {
  Fixture f;
  for (int id = 0; id < 8; ++id) f.q.arm(f.make(id).timer, 50);
  // Re-arming to the same deadline counts as arming again: to the back.
  f.q.arm(f.owners[2]->timer, 50);
  f.advanceTo(50);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{0, 1, 3, 4, 5, 6, 7, 2}));
}

TEST(TimerQueue, CancelPreventsFiring) {
  Fixture f;
  Owner& a = f.make(1);
  Owner& b = f.make(2);
  Owner& c = f.make(3);
  f.q.arm(a.timer, 10);
  f.q.arm(b.timer, 20);
  f.q.arm(c.timer, 30);
  EXPECT_TRUE(f.q.cancel(b.timer));
  EXPECT_FALSE(f.q.cancel(b.timer));  // not armed any more
  EXPECT_FALSE(f.q.armed(b.timer));
  a.timer.cancel();  // through the Timer
  EXPECT_FALSE(a.timer.armed());
  EXPECT_EQ(f.q.size(), 1u);
  f.advanceTo(100);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{3}));
}

TEST(TimerQueue, RearmEarlierAndLater) {
  Fixture f;
  Owner& a = f.make(1);
  Owner& b = f.make(2);
  f.q.arm(a.timer, 100);
  f.q.arm(b.timer, 50);
  f.q.arm(a.timer, 10);  // earlier: now the front
  EXPECT_EQ(f.q.size(), 2u);
  EXPECT_EQ(f.q.nextDeadline(), 10u);
  EXPECT_EQ(a.timer.deadline(), 10u);
  f.q.arm(b.timer, 200);  // later
  EXPECT_EQ(b.timer.deadline(), 200u);
  EXPECT_EQ(f.advanceTo(100), 1u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1}));
  EXPECT_EQ(f.advanceTo(199), 0u);
  EXPECT_EQ(f.advanceTo(200), 1u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1, 2}));
}

TEST(TimerQueue, NextDeadline) {
  Fixture f;
  EXPECT_EQ(f.q.nextDeadline(), std::nullopt);
  Owner& a = f.make(1);
  Owner& b = f.make(2);
  f.q.arm(a.timer, 40);
  EXPECT_EQ(f.q.nextDeadline(), 40u);
  f.q.arm(b.timer, 25);
  EXPECT_EQ(f.q.nextDeadline(), 25u);
  f.q.cancel(b.timer);
  EXPECT_EQ(f.q.nextDeadline(), 40u);
  f.advanceTo(40);
  EXPECT_EQ(f.q.nextDeadline(), std::nullopt);
  EXPECT_EQ(a.timer.deadline(), std::nullopt);
}

TEST(TimerQueue, CallbackArmsAndCancelsOthers) {
  Fixture f;
  Owner& a = f.make(1);
  Owner& b = f.make(2);
  Owner& c = f.make(3);
  Owner& d = f.make(4);
  Owner& e = f.make(5);
  f.q.arm(a.timer, 10);
  f.q.arm(b.timer, 10);  // due in the same run as a, cancelled by a first
  f.q.arm(d.timer, 15);  // due in this run too, but moved by a
  f.rec.action_id = 1;
  f.rec.action = [&](Owner&) {
    f.q.cancel(b.timer);
    f.q.arm(c.timer, 5);    // already past: stored as now (20), fires next run
    f.q.arm(d.timer, 12);   // re-armed during the run: likewise
    f.q.arm(e.timer, 100);  // in the future: armed as usual
  };
  EXPECT_EQ(f.advanceTo(20), 1u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1}));
  EXPECT_EQ(c.timer.deadline(), 20u);
  EXPECT_EQ(d.timer.deadline(), 20u);
  EXPECT_EQ(e.timer.deadline(), 100u);
  EXPECT_EQ(f.q.nextDeadline(), 20u);
  // Next run: in the order they were armed.
  EXPECT_EQ(f.advanceTo(20), 2u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1, 3, 4}));
  EXPECT_EQ(f.advanceTo(100), 1u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1, 3, 4, 5}));
}

TEST(TimerQueue, CallbackArmingLaterTimerDueInSameRunWaits) {
  // A timer armed by a callback never fires in that runDue, even when the
  // other timers that were due keep firing after it.
  Fixture f;
  Owner& a = f.make(1);
  Owner& b = f.make(2);
  Owner& c = f.make(3);
  f.q.arm(a.timer, 10);
  f.q.arm(b.timer, 30);
  f.rec.action_id = 1;
  f.rec.action = [&](Owner&) { f.q.arm(c.timer, 20); };
  EXPECT_EQ(f.advanceTo(30), 2u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1, 2}));
  EXPECT_EQ(f.advanceTo(30), 1u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1, 2, 3}));
}

TEST(TimerQueue, CallbackRearmsItselfToNowFiresOncePerRun) {
  Fixture f;
  Owner& a = f.make(1);
  Owner& b = f.make(2);
  f.q.arm(a.timer, 10);
  f.q.arm(b.timer, 10);
  f.rec.action_id = 1;
  f.rec.action = [&](Owner& o) { f.q.arm(o.timer, f.clock.monotonicMs()); };
  EXPECT_EQ(f.advanceTo(10), 2u);  // no infinite loop; b still fires
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1, 2}));
  EXPECT_TRUE(a.timer.armed());
  EXPECT_EQ(f.advanceTo(10), 1u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1, 2, 1}));
  f.rec.action = [&](Owner& o) { f.q.arm(o.timer, f.clock.monotonicMs() + 5); };
  EXPECT_EQ(f.advanceTo(10), 1u);
  EXPECT_EQ(a.timer.deadline(), 15u);
  EXPECT_EQ(f.advanceTo(14), 0u);
  EXPECT_EQ(f.advanceTo(15), 1u);
}

TEST(TimerQueue, CallbackMayDestroyItsOwnerAndOthers) {
  Fixture f;
  auto* a = new Owner;
  auto* b = new Owner;
  Owner& c = f.make(3);
  a->id = 1;
  a->rec = &f.rec;
  b->id = 2;
  b->rec = &f.rec;
  f.q.arm(a->timer, 10);
  f.q.arm(b->timer, 10);
  f.q.arm(c.timer, 10);
  f.rec.action_id = 1;
  f.rec.action = [&](Owner& o) {
    delete b;  // armed and due: its destructor cancels it
    delete &o;  // the firing timer's own owner
  };
  EXPECT_EQ(f.advanceTo(10), 2u);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1, 3}));
  EXPECT_TRUE(f.q.empty());
}

TEST(TimerQueue, DestructorOfArmedTimerCancelsIt) {
  Fixture f;
  Owner& keep = f.make(1);
  f.q.arm(keep.timer, 30);
  {
    Owner gone;
    gone.id = 2;
    gone.rec = &f.rec;
    f.q.arm(gone.timer, 10);
    EXPECT_EQ(f.q.size(), 2u);
    EXPECT_EQ(f.q.nextDeadline(), 10u);
  }
  EXPECT_EQ(f.q.size(), 1u);
  EXPECT_EQ(f.q.nextDeadline(), 30u);
  f.advanceTo(100);
  EXPECT_EQ(f.rec.fired, (std::vector<int>{1}));
}

TEST(TimerQueue, TimerOutlivingItsQueueIsDisarmed) {
  Owner o;
  {
    TimerQueue q;
    q.arm(o.timer, 10);
    EXPECT_TRUE(o.timer.armed());
  }
  EXPECT_FALSE(o.timer.armed());  // and ~Timer does not touch the dead queue
}

TEST(TimerQueue, ArmingInAnotherQueueMovesTheTimer) {
  Fixture f;
  TimerQueue other;
  Owner& a = f.make(1);
  f.q.arm(a.timer, 10);
  other.arm(a.timer, 20);
  EXPECT_TRUE(f.q.empty());
  EXPECT_TRUE(other.armed(a.timer));
  EXPECT_FALSE(f.q.armed(a.timer));
  EXPECT_EQ(other.runDue(20), 1u);
}

TEST(TimerQueue, FrontChangedOnlyWhenTheEarliestDeadlineChanges) {
  Fixture f;
  int calls = 0;
  f.q.setFrontChanged([](void* n) { ++*static_cast<int*>(n); }, &calls);
  Owner& a = f.make(1);
  Owner& b = f.make(2);
  Owner& c = f.make(3);
  f.q.arm(a.timer, 10);
  EXPECT_EQ(calls, 1);
  f.q.arm(b.timer, 20);  // behind the front
  EXPECT_EQ(calls, 1);
  f.q.arm(c.timer, 5);  // new front
  EXPECT_EQ(calls, 2);
  f.q.cancel(b.timer);  // not the front
  EXPECT_EQ(calls, 2);
  f.q.cancel(c.timer);  // the front
  EXPECT_EQ(calls, 3);
  f.q.arm(a.timer, 15);  // the front moves later
  EXPECT_EQ(calls, 4);
  f.q.arm(b.timer, 15);  // same earliest deadline, behind a
  EXPECT_EQ(calls, 4);
  f.advanceTo(15);  // runDue does not notify; its caller looks itself
  EXPECT_EQ(calls, 4);
  f.q.setFrontChanged(nullptr, nullptr);
}

TEST(TimerQueue, HundredThousandRandomTimersFireInOrder) {
  constexpr int kCount = 100'000;
  struct Rec {
    Timer timer;
    int index = 0;
    uint64_t deadline = 0;
    uint64_t armed_seq = 0;
    bool cancelled = false;
    std::vector<const Rec*>* log = nullptr;
  };
  std::vector<const Rec*> log;
  log.reserve(kCount);
  auto recs = std::make_unique<Rec[]>(kCount);
  TimerQueue q;
  std::mt19937_64 rng(12345);
  // Few distinct deadlines, so that many ties are checked too.
  std::uniform_int_distribution<uint64_t> deadline(0, 20'000);
  uint64_t seq = 0;
  for (int i = 0; i < kCount; ++i) {
    Rec& r = recs[i];
    r.index = i;
    r.log = &log;
    r.timer.bind([](Timer& t) {
      Rec* self = t.owner<Rec>();
      self->log->push_back(self);
    }, &r);
    r.deadline = deadline(rng);
    r.armed_seq = seq++;
    q.arm(r.timer, r.deadline);
  }
  // Move one in ten, cancel one in ten: entries leave from the middle.
  std::uniform_int_distribution<int> pick(0, kCount - 1);
  int cancelled = 0;
  for (int k = 0; k < kCount / 10; ++k) {
    Rec& r = recs[pick(rng)];
    r.deadline = deadline(rng);
    r.armed_seq = seq++;
    q.arm(r.timer, r.deadline);
  }
  for (int k = 0; k < kCount / 10; ++k) {
    Rec& r = recs[pick(rng)];
    if (!r.cancelled) {
      EXPECT_TRUE(q.cancel(r.timer));
      r.cancelled = true;
      ++cancelled;
    }
  }
  ASSERT_EQ(q.size(), static_cast<size_t>(kCount - cancelled));
  // Fire in steps of time; each step fires exactly what is due.
  size_t total = 0;
  for (uint64_t now = 0; now <= 20'000; now += 997) {
    total += q.runDue(now);
    if (q.nextDeadline()) {
      EXPECT_GT(*q.nextDeadline(), now);
    }
  }
  total += q.runDue(20'000);
  EXPECT_EQ(total, static_cast<size_t>(kCount - cancelled));
  ASSERT_EQ(log.size(), total);
  EXPECT_TRUE(q.empty());
  for (size_t i = 1; i < log.size(); ++i) {
    const Rec& p = *log[i - 1];
    const Rec& c = *log[i];
    ASSERT_TRUE(p.deadline < c.deadline || (p.deadline == c.deadline && p.armed_seq < c.armed_seq))
        << "out of order at " << i;
  }
  for (const Rec* r : log) EXPECT_FALSE(r->cancelled);
}

TEST(PeriodicTimer, TicksOnScheduleAndSkipsMissedTicks) {
  FakeClock clock(1000);
  TimerQueue q;
  struct Counter {
    int ticks = 0;
    int stop_after = 1 << 30;
  } counter;
  PeriodicTimer p(q, clock, 10, [](PeriodicTimer& self) {
    Counter& c = *self.owner<Counter>();
    if (++c.ticks >= c.stop_after) self.stop();
  }, &counter);
  p.start();
  EXPECT_TRUE(p.running());
  EXPECT_EQ(q.nextDeadline(), 1010u);
  clock.setMonotonic(1010);
  q.runDue(clock.monotonicMs());
  EXPECT_EQ(counter.ticks, 1);
  EXPECT_EQ(q.nextDeadline(), 1020u);
  // Late by 3 ms: the schedule holds.
  clock.setMonotonic(1023);
  q.runDue(clock.monotonicMs());
  EXPECT_EQ(q.nextDeadline(), 1030u);
  // A stall of five periods: one tick, not five, and a fresh schedule.
  clock.setMonotonic(1085);
  EXPECT_EQ(q.runDue(clock.monotonicMs()), 1u);
  EXPECT_EQ(counter.ticks, 3);
  EXPECT_EQ(q.nextDeadline(), 1095u);
  counter.stop_after = 4;
  clock.setMonotonic(1095);
  q.runDue(clock.monotonicMs());
  EXPECT_EQ(counter.ticks, 4);
  EXPECT_FALSE(p.running());
  EXPECT_TRUE(q.empty());
}

TEST(TimerClock, FakeClockAndWallDeadlines) {
  FakeClock clock(500, 1'000'000);
  clock.advance(100);
  EXPECT_EQ(clock.monotonicMs(), 600u);
  EXPECT_EQ(clock.wallMs(), 1'000'100);
  // 30 s left on the wall clock: due 30 s from now on the monotonic clock.
  EXPECT_EQ(monotonicDeadlineFromWall(clock, 1'030'100), 30'600u);
  // Already passed (e.g. expired while the broker was down): due now.
  EXPECT_EQ(monotonicDeadlineFromWall(clock, 999'000), 600u);
  // A wall-clock step does not move what was already converted, but a later
  // conversion sees it.
  clock.setWall(1'020'100);
  EXPECT_EQ(monotonicDeadlineFromWall(clock, 1'030'100), 10'600u);
  EXPECT_EQ(saturatingAdd(UINT64_MAX - 1, 5), UINT64_MAX);
}

}  // namespace
}  // namespace petrel
