// src/metrics/monitor.h — the operator's view of the broker: a periodic
// probe on the loop (how late it runs: the loop lag; the message and byte
// rates of the last second and the last two minutes; mosquitto's load
// averages for $SYS), the busiest topics (top_topics.h), and the snapshot
// of every part's figures that /metrics and /api/v1/stats render
// (snapshot.h).
//
// Cost: nothing per message but TopTopics' countdown; the probe runs every
// 250 ms while the HTTP endpoint is on, every second for $SYS alone, not at
// all when both are off. Figures that need a walk over every session or
// connection (queue depths, offline sessions) are computed when asked, at
// most once a second.
//
// May call: reads the other parts (Sessions, Router, Durable, OutputBudget,
// DelayedPublish, the bridges, the connection list) and the counters.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "src/config/config.h"
#include "src/metrics/load_average.h"
#include "src/metrics/snapshot.h"
#include "src/metrics/stats.h"
#include "src/metrics/top_topics.h"
#include "src/timers/timer_queue.h"

namespace petrel {

class Bridge;
class Connection;
class DelayedPublish;
class Durable;
class LoopTimers;
class Cluster;
class IoWorkers;
class OutputBudget;
class Router;
class Sessions;

class Monitor {
 public:
  struct Parts {
    const Config& cfg;
    const BrokerStats& stats;
    LoopTimers& timers;
    Durable& durable;
    Router& router;
    Sessions& sessions;
    const OutputBudget& budget;
    const std::vector<Connection*>& connections;
    const DelayedPublish& delayed;
    const std::vector<std::unique_ptr<Bridge>>& bridges;
    const Cluster& cluster;  // may be built after the Monitor: read only in snapshots
    const IoWorkers& io;
  };
  // mosquitto's load figures ($SYS/broker/load/...).
  enum Load { kMessagesReceived, kMessagesSent, kPublishDropped, kBytesReceived, kBytesSent, kConnections,
              kSockets, kLoads };
  static constexpr uint64_t kProbeMs = 250;       // with the HTTP endpoint
  static constexpr uint64_t kSysProbeMs = 1000;   // for $SYS alone
  static constexpr size_t kHistorySeconds = 120;

  explicit Monitor(const Parts& p);
  Monitor(const Monitor&) = delete;
  Monitor& operator=(const Monitor&) = delete;

  // Uptime counts from here; the probe starts when `http` (the endpoint
  // is on) or mqtt.sys_interval is set.
  void start(bool http);
  void stop();

  // Each PUBLISH received (a countdown, almost always).
  void onPublish(const std::string& topic) { top_.onPublish(topic); }

  const LoadAverage& load(Load which) const { return loads_[which]; }
  double uptimeSeconds() const;

  // Figures that take a walk over sessions and connections; computed at
  // most once a second.
  struct Totals {
    uint64_t connections_open = 0;
    uint64_t sessions_offline = 0;
    uint64_t queued_memory = 0;
    uint64_t queued_store = 0;
    uint64_t queued_bytes = 0;
    uint64_t inflight = 0;
  };
  const Totals& totals();

  MetricsSnapshot snapshot();

  static constexpr double kLagBounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  static constexpr size_t kLagBuckets = sizeof(kLagBounds) / sizeof(kLagBounds[0]);

 private:
  static void onProbe(Timer& t);
  void probe();
  void everySecond(double dt_s);

  Parts p_;
  Timer timer_;
  uint64_t period_ms_ = 0;
  uint64_t due_ms_ = 0;          // the probe's deadline (loop time)
  uint64_t started_ns_ = 0;      // uv_hrtime at start()
  double start_wall_s_ = 0;
  uint64_t last_second_ns_ = 0;  // the last rates update

  // Loop lag.
  uint64_t lag_counts_[kLagBuckets + 1] = {};
  double lag_sum_s_ = 0;
  double lag_last_s_ = 0;

  // Rates: the counters at the last update, the last rates, their history.
  uint64_t last_received_ = 0, last_sent_ = 0, last_bytes_in_ = 0, last_bytes_out_ = 0;
  MetricsSnapshot::Rates rates_;
  std::deque<MetricsSnapshot::Rates> history_;
  LoadAverage loads_[kLoads];
  TopTopics top_;

  Totals totals_;
  uint64_t totals_ns_ = 0;  // when totals_ were computed (0: never)
};

}  // namespace petrel
