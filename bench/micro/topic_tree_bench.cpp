// Topic tree: match time and memory per subscription with up to a million
// subscriptions, in the shapes IoT fleets use (one topic per device, a few
// wildcard watchers over the fleet).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "src/routing/topic_tree.h"

namespace petrel {
namespace {

// Bytes the allocator has handed out (in use), to measure the tree's size.
size_t heapInUse() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

std::string deviceTopic(size_t i) {
  return "fleet/site" + std::to_string(i % 100) + "/dev" + std::to_string(i) + "/telemetry";
}

// `n` sessions, each subscribed to its own device topic, plus 10 watchers
// on `fleet/+/+/telemetry` and 10 on `fleet/#`.
struct Fleet {
  TopicTree tree;
  // The tree keeps only pointers: sessions are never dereferenced by match.
  std::vector<char> sessions;
  size_t bytes_per_subscription = 0;

  explicit Fleet(size_t n) : sessions(n + 20) {
    const size_t before = heapInUse();
    SubscriptionOptions o;
    o.qos = 1;
    for (size_t i = 0; i < n; ++i)
      tree.subscribe(deviceTopic(i), {}, reinterpret_cast<Session*>(&sessions[i]), o);
    bytes_per_subscription = (heapInUse() - before) / n;
    for (size_t i = 0; i < 10; ++i) {
      tree.subscribe("fleet/+/+/telemetry", {}, reinterpret_cast<Session*>(&sessions[n + i]), o);
      tree.subscribe("fleet/#", {}, reinterpret_cast<Session*>(&sessions[n + 10 + i]), o);
    }
  }
};

Fleet& fleet(size_t n) {
  static std::unique_ptr<Fleet> f;
  if (!f || f->sessions.size() != n + 20) {
    f.reset();
    f = std::make_unique<Fleet>(n);
  }
  return *f;
}

// One device's publish: its own subscriber and the 20 watchers match.
void BM_MatchDeviceTopic(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  Fleet& f = fleet(n);
  std::vector<std::string> topics;
  for (size_t i = 0; i < 1024; ++i) topics.push_back(deviceTopic((i * 7919) % n));
  size_t matched = 0, i = 0;
  for (auto _ : state) {
    f.tree.match(topics[i++ & 1023], [&](const Subscriber&) { ++matched; }, [](SharedGroup&) {});
  }
  benchmark::DoNotOptimize(matched);
  state.counters["subscriptions"] = static_cast<double>(f.tree.subscriptionCount());
  state.counters["bytes_per_sub"] = static_cast<double>(f.bytes_per_subscription);
  state.counters["matches_per_publish"] = static_cast<double>(matched) / static_cast<double>(state.iterations());
}
BENCHMARK(BM_MatchDeviceTopic)->Arg(1000)->Arg(100000)->Arg(1000000)->Unit(benchmark::kNanosecond);

// A topic no device subscribed to: only the wildcard watchers match.
void BM_MatchUnknownDevice(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  Fleet& f = fleet(n);
  const std::string topic = "fleet/site7/unknown-device/telemetry";
  size_t matched = 0;
  for (auto _ : state)
    f.tree.match(topic, [&](const Subscriber&) { ++matched; }, [](SharedGroup&) {});
  benchmark::DoNotOptimize(matched);
}
BENCHMARK(BM_MatchUnknownDevice)->Arg(1000)->Arg(1000000);

// Subscribe and unsubscribe one device in a tree of `n`.
void BM_SubscribeUnsubscribe(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  Fleet& f = fleet(n);
  char session;
  SubscriptionOptions o;
  size_t i = 0;
  for (auto _ : state) {
    const std::string t = deviceTopic(n + (i++ % 1000));
    f.tree.subscribe(t, {}, reinterpret_cast<Session*>(&session), o);
    f.tree.unsubscribe(t, {}, reinterpret_cast<Session*>(&session));
  }
}
BENCHMARK(BM_SubscribeUnsubscribe)->Arg(1000)->Arg(1000000);

// Levels chosen by someone who knows the table's hash: `n` names under
// one node that all fall in one bucket of a std::hash table of that size
// (std::hash's seed is the same in every process, so anyone can find
// them by trying names in turn). The tree hashes levels with a key drawn
// at start (util/keyed_hash.h), which spreads them over the buckets; with
// std::hash every lookup of one of them walked a chain of all `n`.
// Building the tree is timed as well ("subscribe_all_ms").
struct Flood {
  TopicTree tree;
  std::vector<std::string> topics;
  double subscribe_all_ms = 0;

  explicit Flood(size_t n) {
    // The bucket count a table of `n` names grown one by one ends with.
    std::unordered_map<std::string, int> probe;
    for (size_t i = 0; i < n; ++i) probe.emplace(std::to_string(i), 0);
    const size_t buckets = probe.bucket_count();
    for (uint64_t i = 0; topics.size() < n; ++i) {
      std::string level = "d" + std::to_string(i);
      if (std::hash<std::string_view>{}(level) % buckets == 0) topics.push_back("flood/" + level);
    }
    static char session;
    SubscriptionOptions o;
    o.qos = 1;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& t : topics) tree.subscribe(t, {}, reinterpret_cast<Session*>(&session), o);
    subscribe_all_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
};

void BM_MatchLevelsChosenToCollide(benchmark::State& state) {
  static std::unique_ptr<Flood> f;
  const size_t n = static_cast<size_t>(state.range(0));
  if (!f || f->topics.size() != n) {
    f.reset();
    f = std::make_unique<Flood>(n);
  }
  size_t matched = 0, i = 0;
  for (auto _ : state)
    f->tree.match(f->topics[(i++ * 7919) % n], [&](const Subscriber&) { ++matched; }, [](SharedGroup&) {});
  benchmark::DoNotOptimize(matched);
  state.counters["subscribe_all_ms"] = f->subscribe_all_ms;
}
BENCHMARK(BM_MatchLevelsChosenToCollide)->Arg(5000)->Unit(benchmark::kNanosecond);

}  // namespace
}  // namespace petrel
