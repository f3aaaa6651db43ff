// DelayedPublish in-process, on the broker's parts (BrokerParts) with a
// real LMDB store in a scratch directory and a real loop: due entries fire
// in key order through a RAM window much smaller than what is pending,
// whether their records are committed, still in the batch, or fired and
// not yet deleted on disk; a restart finds the count and the first window
// only; firing deletes the records. The receiver is an offline session
// whose copies stay in its RAM queue, where the test reads them.
#include <gtest/gtest.h>
#include <uv.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "persistence/store.h"
#include "src/broker/parts.h"
#include "tests/unit/temp_dir.h"

namespace petrel {
namespace {

constexpr uint32_t kWindow = 4;

Config config() {
  Config c;
  c.delayed.ram_window = kWindow;
  return c;
}

// One broker's parts on its own loop, with the store in `dir` attached.
struct Node {
  explicit Node(const std::string& dir) : parts(loop, config()) {
    persistence::StoreOptions o;
    o.dir = dir;
    std::string err;
    auto store = persistence::Store::open(o, err);
    if (!store) ADD_FAILURE() << err;
    parts.durable_.attach(std::move(store), [this](bool) { parts.delayed_.afterCommit(parts.durable_.committed()); });
    Session& s = parts.sessions_.create("sub");
    s.expiry_interval = 0xFFFFFFFF;  // kept while offline, its queue in RAM
    SubscriptionOptions so;
    so.qos = 1;
    parts.router_.tree().subscribe("d/#", "", &s, so);
    s.subscriptions.set("d/#", so);
    sub = &s;
    parts.delayed_.load();
  }
  ~Node() {
    parts.timers_.close();  // nothing fires from here on
    parts.durable_.submit();
    parts.durable_.finish();
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
  }

  struct Loop {
    Loop() { uv_loop_init(&l); }
    uv_loop_t l;
    operator uv_loop_t*() { return &l; }
  };

  // A QoS 1 message to d/<n>, due at `due_ms`; its payload is `n`.
  mqtt::Reason schedule(int n, int64_t due_ms) {
    auto m = std::make_shared<Message>();
    m->topic = "d/" + std::to_string(n);
    m->payload = std::to_string(n);
    m->qos = 1;
    m->id = parts.durable_.newMessageId();
    return parts.delayed_.schedule(m, due_ms);
  }
  // What the loop turn would do at its end: submit the batch; then wait
  // for the commit, and let the loop run its notification (and whatever
  // timers are due).
  void commit() {
    store();
    uv_run(loop, UV_RUN_NOWAIT);
  }
  // Submits the batch and waits for the commit, without running the loop.
  void store() {
    parts.durable_.submit();
    parts.durable_.store().drain();
  }
  // Runs the loop until `n` messages have reached the session.
  void fireUntil(size_t n) {
    for (int i = 0; i < 2000 && sub->queue.size() < n; ++i) uv_run(loop, UV_RUN_NOWAIT);
  }
  std::vector<int> received() const {
    std::vector<int> out;
    for (const auto& d : sub->queue) out.push_back(std::stoi(d.msg->payload));
    return out;
  }
  int64_t now() const { return parts.clock_.wallMs(); }

  Loop loop;
  BrokerParts parts;
  Session* sub = nullptr;
};

// The payloads in the order of (due, schedule order).
std::vector<int> dueOrder(const std::vector<int64_t>& due) {
  std::vector<std::pair<int64_t, int>> v;
  for (size_t i = 0; i < due.size(); ++i) v.emplace_back(due[i], int(i));
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<int> out;
  for (const auto& e : v) out.push_back(e.second);
  return out;
}

TEST(DelayedPublish, UncommittedEntriesFireInDueOrderThroughASmallWindow) {
  TempDir dir;
  Node b(dir.path());
  // Due already, in shuffled order, none committed yet: the window holds
  // 4, the rest are only in the batch.
  std::mt19937 rnd(3);
  const int64_t base = b.now() - 10'000;
  std::vector<int64_t> due;
  for (int i = 0; i < 40; ++i) {
    due.push_back(base + int64_t(rnd() % 20));
    ASSERT_EQ(b.schedule(i, due.back()), mqtt::Reason::Success);
  }
  EXPECT_EQ(b.parts.delayed_.pending(), 40u);
  EXPECT_EQ(b.parts.delayed_.window().inRam(), kWindow);
  b.fireUntil(40);
  EXPECT_EQ(b.received(), dueOrder(due));
  EXPECT_EQ(b.parts.delayed_.pending(), 0u);
  EXPECT_EQ(b.parts.delayed_.fired(), 40u);
  b.commit();
  EXPECT_EQ(b.parts.durable_.store().delayedCount(), 0u);  // put and deleted in one commit
}

TEST(DelayedPublish, CommittedAndUncommittedEntriesInterleave) {
  TempDir dir;
  Node b(dir.path());
  const int64_t base = b.now() - 10'000;  // all due already
  std::vector<int64_t> due;
  auto add = [&](int from, int to, int offset) {
    for (int i = from; i < to; ++i) {
      due.push_back(base + 3 * (i - from) + offset);
      ASSERT_EQ(b.schedule(i, due.back()), mqtt::Reason::Success);
    }
  };
  add(0, 10, 0);
  b.store();  // committed, and known to be (the commit notification)
  b.parts.delayed_.afterCommit(b.parts.durable_.committed());
  add(10, 15, 1);
  b.store();  // committed, its notification not seen yet
  add(15, 20, 2);  // still in the batch
  EXPECT_EQ(b.parts.delayed_.pending(), 20u);
  EXPECT_EQ(b.parts.delayed_.window().inRam(), kWindow);
  b.fireUntil(20);
  EXPECT_EQ(b.received(), dueOrder(due));
  b.commit();
  EXPECT_EQ(b.parts.durable_.store().delayedCount(), 0u);
}

TEST(DelayedPublish, NothingFiresBeforeItIsDue) {
  TempDir dir;
  Node b(dir.path());
  for (int i = 0; i < 10; ++i) b.schedule(i, b.now() + 3'600'000 + i);
  b.commit();
  for (int i = 0; i < 5; ++i) uv_run(b.loop, UV_RUN_NOWAIT);
  EXPECT_TRUE(b.sub->queue.empty());
  EXPECT_EQ(b.parts.durable_.store().delayedCount(), 10u);
  EXPECT_EQ(b.parts.delayed_.window().inRam(), kWindow);
  EXPECT_EQ(b.parts.delayed_.window().diskOnly(), 6u);
}

TEST(DelayedPublish, ARestartReadsTheCountAndTheFirstWindowAndFiresEachOnce) {
  TempDir dir;
  std::vector<int64_t> due;
  {
    Node b(dir.path());
    // Due already; the loop does not run, so they wait in the store.
    std::mt19937 rnd(5);
    const int64_t base = b.now() - 60'000;
    for (int i = 0; i < 50; ++i) {
      due.push_back(base + int64_t(rnd() % 30) * 7);
      ASSERT_EQ(b.schedule(i, due.back()), mqtt::Reason::Success);
    }
    b.store();
    EXPECT_EQ(b.parts.durable_.store().delayedCount(), 50u);
  }
  {
    Node b(dir.path());
    EXPECT_EQ(b.parts.delayed_.pending(), 50u);
    EXPECT_EQ(b.parts.delayed_.window().inRam(), kWindow);
    // The message ids of the delayed records are not handed out again.
    EXPECT_GT(b.parts.durable_.newMessageId(), 50u);
    // Fire half, keep the loop from committing the deletions, fire the rest:
    // the refills skip what fired and is still on disk.
    b.fireUntil(25);
    ASSERT_GE(b.sub->queue.size(), 25u);
    b.fireUntil(50);
    EXPECT_EQ(b.received(), dueOrder(due));
    b.commit();
    EXPECT_EQ(b.parts.durable_.store().delayedCount(), 0u);
  }
  {
    Node b(dir.path());  // nothing fires twice
    EXPECT_EQ(b.parts.delayed_.pending(), 0u);
    for (int i = 0; i < 5; ++i) uv_run(b.loop, UV_RUN_NOWAIT);
    EXPECT_TRUE(b.sub->queue.empty());
  }
}

TEST(DelayedPublish, MaxPendingIsAQuota) {
  TempDir dir;
  Node b(dir.path());
  b.parts.cfg_.delayed.max_pending = 3;
  const int64_t later = b.now() + 3'600'000;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.schedule(i, later), mqtt::Reason::Success);
  EXPECT_EQ(b.schedule(3, later), mqtt::Reason::QuotaExceeded);
  EXPECT_EQ(b.parts.delayed_.refused(), 1u);
  EXPECT_EQ(b.parts.delayed_.pending(), 3u);
}

TEST(DelayedPublish, AnExpiredMessageIsDroppedWhenDue) {
  TempDir dir;
  Node b(dir.path());
  auto m = std::make_shared<Message>();
  m->topic = "d/x";
  m->payload = "1";
  m->qos = 1;
  m->id = b.parts.durable_.newMessageId();
  m->expires_at_ms = b.now() - 1;
  ASSERT_EQ(b.parts.delayed_.schedule(m, b.now() - 5), mqtt::Reason::Success);
  b.schedule(2, b.now() - 4);
  b.fireUntil(1);
  for (int i = 0; i < 5; ++i) uv_run(b.loop, UV_RUN_NOWAIT);
  EXPECT_EQ(b.received(), std::vector<int>{2});
  EXPECT_EQ(b.parts.delayed_.dropped(), 1u);
  EXPECT_EQ(b.parts.delayed_.fired(), 1u);
}

// A step of the system clock while messages wait: a delay of N seconds is
// N seconds of elapsed time, whichever way the wall clock is set meanwhile;
// a Unix time is read against the wall clock as it is when published. This
// DelayedPublish has no store (RAM only) and a FakeClock, driven by hand.
TEST(DelayedPublish, AWallClockStepMovesNoDelay) {
  Node::Loop loop;
  BrokerParts parts(loop, config());
  Session& s = parts.sessions_.create("sub");
  s.expiry_interval = 0xFFFFFFFF;
  SubscriptionOptions so;
  so.qos = 1;
  parts.router_.tree().subscribe("d/#", "", &s, so);
  s.subscriptions.set("d/#", so);
  FakeClock clock(5'000, 1'800'000'000'000);
  DelayedPublish delayed({parts.cfg_, clock, parts.timers_, parts.durable_, parts.router_});
  auto publish = [&](std::string topic, const char* payload) {
    int64_t due = 0;
    EXPECT_EQ(delayed.resolve(topic, due), mqtt::Reason::Success);
    auto m = std::make_shared<Message>();
    m->topic = topic;
    m->payload = payload;
    m->qos = 1;
    EXPECT_EQ(delayed.schedule(m, due), mqtt::Reason::Success);
  };
  auto got = [&] {
    std::string out;
    for (const auto& d : s.queue) out += d.msg->payload;
    return out;
  };
  publish("$delayed/10/d/a", "a");  // due in 10 s
  publish("$delayed/30/d/b", "b");  // due in 30 s
  // The wall clock jumps an hour ahead (an operator, or NTP at last in
  // reach): nothing is due yet.
  clock.setWall(clock.wallMs() + 3'600'000);
  delayed.fireDue();
  EXPECT_EQ(got(), "");
  // A Unix time published now, 20 s ahead on the wall clock as it is now.
  publish("$delayed/" + std::to_string(clock.wallMs() / 1000 + 20) + "/d/c", "c");
  clock.advance(9'999);
  delayed.fireDue();
  EXPECT_EQ(got(), "");
  clock.advance(1);  // 10 s after the publish
  delayed.fireDue();
  EXPECT_EQ(got(), "a");
  // And an hour back: what is due in 20 s (c) and 30 s (b) stays so.
  clock.setWall(clock.wallMs() - 3'600'000);
  clock.advance(9'000);  // 19 s
  delayed.fireDue();
  EXPECT_EQ(got(), "a");
  clock.advance(1'000);  // 20 s
  delayed.fireDue();
  EXPECT_EQ(got(), "ac");
  clock.advance(10'000);  // 30 s
  delayed.fireDue();
  EXPECT_EQ(got(), "acb");
  EXPECT_EQ(delayed.pending(), 0u);
  parts.timers_.close();
  uv_run(loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(loop), 0);
}

}  // namespace
}  // namespace petrel
