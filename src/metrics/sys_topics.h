// src/metrics/sys_topics.h — the broker's metrics as MQTT messages under
// $SYS/broker/..., every mqtt.sys_interval seconds (sys_topics.cpp).
//
// May call: Router (publishes and keeps them retained in memory), and reads
// the counters and sizes of the other parts.
#pragma once

#include <cstdint>
#include <vector>

#include "src/config/config.h"
#include "src/metrics/stats.h"

namespace petrel {

class Clock;
class Connection;
class DelayedPublish;
class Durable;
class Monitor;
class OutputBudget;
class Router;
class Sessions;

class SysTopics {
 public:
  struct Parts {
    const Config& cfg;
    const BrokerStats& stats;
    const Clock& clock;
    Durable& durable;
    Router& router;
    Sessions& sessions;
    const OutputBudget& budget;
    const std::vector<Connection*>& connections;
    const DelayedPublish& delayed;
    Monitor& monitor;  // load averages, figures that take a walk
  };
  explicit SysTopics(const Parts& p) : p_(p) {}

  void start();  // uptime counts from here
  void publish();

 private:
  Parts p_;
  uint64_t started_ms_ = 0;
};

}  // namespace petrel
