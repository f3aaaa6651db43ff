// CPU time per thread from /proc: the stat line's fields are counted from
// the last ')', whatever the thread's name holds; and this process's own
// threads are found by name.
#include <gtest/gtest.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "src/metrics/thread_cpu.h"

namespace petrel {
namespace {

TEST(ThreadCpu, UserAndSystemTicksAreFields14And15) {
  uint64_t t = 0;
  ASSERT_TRUE(parseTaskStat(
      "4242 (petrel-io-1) S 1 4242 4242 0 -1 4194368 1234 0 0 0 150 27 0 0 20 0 3 0 5 0 0 0 0 0 0 0\n", t));
  EXPECT_EQ(t, 177u);
}

TEST(ThreadCpu, ANameWithSpacesAndParenthesesDoesNotShiftTheFields) {
  uint64_t t = 0;
  ASSERT_TRUE(parseTaskStat("7 (a) b (c) d) R 1 7 7 0 -1 0 0 0 0 0 9 1 0 0 20 0 1 0 5\n", t));
  EXPECT_EQ(t, 10u);
}

TEST(ThreadCpu, WhatIsNotAStatLineIsRefused) {
  uint64_t t = 0;
  EXPECT_FALSE(parseTaskStat("", t));
  EXPECT_FALSE(parseTaskStat("12 (x) S 1 2 3", t));                                  // cut short
  EXPECT_FALSE(parseTaskStat("12 (x) S 1 2 3 4 5 6 7 8 9 10 1x 2 0 0 20 0 1 0 5", t));  // not a number
  EXPECT_FALSE(parseTaskStat("no parentheses 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15", t));
}

TEST(ThreadCpu, TheMainThreadAndANamedThreadAreReportedByName) {
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    pthread_setname_np(pthread_self(), "petrel-test-1");
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(60);
    volatile uint64_t x = 0;
    while (std::chrono::steady_clock::now() < until) x = x + 1;  // some CPU time of its own
    while (!stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const std::vector<ThreadCpu> threads = threadCpu();
  stop = true;
  busy.join();
  ASSERT_FALSE(threads.empty());
  EXPECT_EQ(threads.front().thread, "main");
  bool found = false;
  for (const ThreadCpu& t : threads) {
    if (t.thread != "petrel-test-1") continue;
    found = true;
    EXPECT_GT(t.seconds, 0.0);
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace petrel
