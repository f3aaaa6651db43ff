// src/metrics/snapshot.h — everything the operator's endpoints show, as
// plain values gathered in one pass (Monitor::snapshot), and its two
// renderings: the Prometheus text of /metrics and the JSON of
// /api/v1/stats (render.cpp). Plain data, so the renderings are tested
// without a broker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "src/metrics/stats.h"
#include "src/metrics/thread_cpu.h"
#include "src/metrics/top_topics.h"

namespace petrel {

struct MetricsSnapshot {
  std::string version;
  double uptime_s = 0;
  double start_time_s = 0;  // Unix time
  double resident_bytes = 0;
  double cpu_seconds = 0;

  BrokerStats stats;  // the counters, copied
  uint64_t connections_open = 0;  // MQTT sockets (bridge links included), not closing
  uint64_t sessions = 0;
  uint64_t sessions_offline = 0;
  uint64_t subscriptions = 0;
  uint64_t retained = 0;
  // Session queues: entries in RAM, entries only in the store (beyond the
  // RAM window), payload bytes of both; outbound QoS 1/2 in flight.
  uint64_t queued_memory = 0;
  uint64_t queued_store = 0;
  uint64_t queued_bytes = 0;
  uint64_t inflight = 0;
  uint64_t output_buffered_bytes = 0;
  uint64_t output_memory_limit = 0;  // limits.max_output_memory in force

  struct Group {
    std::string name, filter;
    uint64_t members = 0, online = 0, queued = 0, inflight = 0, delivered = 0, redelivered = 0, dropped = 0;
  };
  std::vector<Group> groups;

  bool store_enabled = false;
  uint64_t store_used_bytes = 0;
  uint64_t store_limit_bytes = 0;
  uint64_t store_messages = 0;       // message records
  uint64_t store_queue_entries = 0;  // queue entries (sessions and groups)
  std::vector<double> commit_bounds;    // seconds
  std::vector<uint64_t> commit_counts;  // per bucket, one more than bounds
  double commit_sum_s = 0;

  bool delayed_enabled = false;
  uint64_t delayed_pending = 0, delayed_fired = 0, delayed_dropped = 0, delayed_refused = 0;

  struct Bridge {
    std::string name;
    bool up = false;
    uint64_t forwarded = 0, received = 0, queued = 0, dropped = 0, reconnects = 0;
  };
  std::vector<Bridge> bridges;

  struct Cluster {
    bool enabled = false;
    bool up = false;
    std::string node;
    uint64_t sent = 0, received = 0, duplicates = 0, dropped = 0, send_failed = 0, kept = 0;
    bool jetstream = false;          // retained messages in the cluster's bucket
    bool retained_watching = false;  // the bucket is open and watched
    bool sessions_watching = false;  // the session registry's bucket is open and watched
    uint64_t retained_put = 0, retained_taken = 0, retained_failed = 0;
    uint64_t taken_over = 0;  // clients closed here: connected to another node since
    // QoS 1 and 2 between nodes through the cluster's stream.
    bool stream_up = false;
    uint64_t stream_stored = 0, stream_failed = 0, stream_taken = 0, stream_waiting = 0, stream_overflow = 0;
    uint64_t stream_unnamed = 0, stream_retried = 0;
    uint64_t moved_in = 0, moved_out = 0, moved_messages_in = 0, moved_messages_out = 0, move_failed = 0;
    uint64_t adopted_nodes = 0, adopted_sessions = 0, adopted_messages = 0, adopt_failed = 0;
    // Share groups across the cluster (the groups' stream).
    uint64_t groups = 0, group_stored = 0, group_taken = 0, group_returned = 0, group_held = 0;
    // The replica of the node's store (src/cluster/store_replica.h).
    bool replica = false, replica_live = false;
    uint64_t replica_snapshots = 0, replica_bytes = 0, replica_records = 0, replica_stalls = 0;
    // This node first, then the others heard from lately (their status).
    struct Node {
      std::string name;
      bool self = false;
      uint64_t clients = 0, sessions = 0, filters = 0, sent = 0, received = 0, retained = 0;
      uint64_t heard_ms_ago = 0;
    };
    std::vector<Node> nodes;
  };
  Cluster cluster;

  // CPU time of the broker's threads (thread_cpu.h).
  std::vector<ThreadCpu> threads;
  // The flow control between the loops, per worker loop (IoWorkers::Flow).
  struct LoopFlow {
    std::string thread;
    uint64_t input_pauses = 0, output_waits = 0;
  };
  std::vector<LoopFlow> loops;

  std::vector<double> lag_bounds;
  std::vector<uint64_t> lag_counts;
  double lag_sum_s = 0;
  double lag_last_s = 0;

  // Rates over the last second, and the last minutes of them (oldest first).
  struct Rates {
    double received = 0, sent = 0;              // PUBLISH a second
    double bytes_received = 0, bytes_sent = 0;  // bytes a second
    uint64_t clients = 0;
  };
  Rates rates;
  std::vector<Rates> history;
  std::vector<TopTopics::Entry> top_topics;
};

// /metrics: the Prometheus text exposition format.
std::string prometheusText(const MetricsSnapshot& s);
// /api/v1/stats: JSON. At most `max_groups` share groups (most queued first).
std::string statsJson(const MetricsSnapshot& s, size_t max_groups = 100);

}  // namespace petrel
