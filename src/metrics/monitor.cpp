#include "src/metrics/monitor.h"

#include <sys/time.h>

#include <iterator>

#include "src/bridges/bridge.h"
#include "src/cluster/cluster.h"
#include "src/delayed/delayed_publish.h"
#include "src/durable/durable.h"
#include "src/routing/router.h"
#include "src/sessions/output_budget.h"
#include "src/sessions/sessions.h"
#include "src/timers/loop_timers.h"
#include "src/transport/connection.h"
#include "src/transport/io_workers.h"

namespace petrel {

namespace {
uint64_t sum3(const uint64_t (&v)[3]) { return v[0] + v[1] + v[2]; }
}  // namespace

Monitor::Monitor(const Parts& p) : p_(p), timer_(&Monitor::onProbe, this) {}

void Monitor::start(bool http) {
  started_ns_ = last_second_ns_ = uv_hrtime();
  timeval tv;
  gettimeofday(&tv, nullptr);
  start_wall_s_ = static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6;
  if (http) top_.enable();
  if (!http && p_.cfg.sys_interval == 0) return;
  period_ms_ = http ? kProbeMs : kSysProbeMs;
  due_ms_ = p_.timers.now() + period_ms_;
  p_.timers.arm(timer_, due_ms_);
}

void Monitor::stop() { p_.timers.cancel(timer_); }

double Monitor::uptimeSeconds() const { return static_cast<double>(uv_hrtime() - started_ns_) / 1e9; }

void Monitor::onProbe(Timer& t) { t.owner<Monitor>()->probe(); }

void Monitor::probe() {
  // How late this timer runs: the loop's time is uv_hrtime in whole
  // milliseconds, so the lateness is measured against that clock.
  const uint64_t now_ns = uv_hrtime();
  const double late_ms = static_cast<double>(now_ns) / 1e6 - static_cast<double>(due_ms_);
  const double lag = late_ms > 0 ? late_ms / 1000.0 : 0.0;
  size_t i = 0;
  while (i < kLagBuckets && lag > kLagBounds[i]) ++i;
  ++lag_counts_[i];
  lag_sum_s_ += lag;
  lag_last_s_ = lag;
  due_ms_ = p_.timers.now() + period_ms_;
  p_.timers.arm(timer_, due_ms_);
  // Rates once a second or so.
  const double dt = static_cast<double>(now_ns - last_second_ns_) / 1e9;
  if (dt >= 0.95) {
    last_second_ns_ = now_ns;
    everySecond(dt);
  }
}

void Monitor::everySecond(double dt) {
  const BrokerStats& st = p_.stats;
  const uint64_t received = sum3(st.received_by_qos), sent = sum3(st.sent_by_qos);
  rates_.received = static_cast<double>(received - last_received_) / dt;
  rates_.sent = static_cast<double>(sent - last_sent_) / dt;
  rates_.bytes_received = static_cast<double>(st.bytes_received - last_bytes_in_) / dt;
  rates_.bytes_sent = static_cast<double>(st.bytes_sent - last_bytes_out_) / dt;
  rates_.clients = st.clients_connected;
  last_received_ = received;
  last_sent_ = sent;
  last_bytes_in_ = st.bytes_received;
  last_bytes_out_ = st.bytes_sent;
  history_.push_back(rates_);
  while (history_.size() > kHistorySeconds) history_.pop_front();

  loads_[kMessagesReceived].update(st.messages_received, dt);
  loads_[kMessagesSent].update(st.messages_delivered, dt);
  loads_[kPublishDropped].update(st.messages_dropped, dt);
  loads_[kBytesReceived].update(st.bytes_received, dt);
  loads_[kBytesSent].update(st.bytes_sent, dt);
  loads_[kConnections].update(st.connects_accepted, dt);
  loads_[kSockets].update(st.connections_total, dt);
  top_.tick(static_cast<double>(last_second_ns_) / 1e9, rates_.received);
}

const Monitor::Totals& Monitor::totals() {
  const uint64_t now = uv_hrtime();
  if (totals_ns_ && now - totals_ns_ < 1000000000ull) return totals_;
  totals_ns_ = now;
  Totals t;
  for (const Connection* c : p_.connections) t.connections_open += !c->closing();
  p_.sessions.forEach([&t](Session& s) {
    t.sessions_offline += s.conn == nullptr;
    // Those whose ids were stored ahead of their turn are still queued.
    const size_t never_sent = s.inflight.neverSent();
    t.queued_memory += s.queue.size() + never_sent;
    t.queued_store += s.disk_count;
    t.queued_bytes += s.queued_bytes;
    t.inflight += s.inflight.size() - never_sent;
  });
  totals_ = t;
  return totals_;
}

MetricsSnapshot Monitor::snapshot() {
  MetricsSnapshot s;
  s.version = PETREL_VERSION;
  s.uptime_s = uptimeSeconds();
  s.start_time_s = start_wall_s_;
  size_t rss = 0;
  if (uv_resident_set_memory(&rss) == 0) s.resident_bytes = static_cast<double>(rss);
  uv_rusage_t ru;
  if (uv_getrusage(&ru) == 0)
    s.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                    static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  s.threads = threadCpu();
  for (const IoWorkers::Flow& f : p_.io.flow()) s.loops.push_back({f.thread, f.input_pauses, f.output_waits});
  s.stats = p_.stats;
  const Totals& t = totals();
  s.connections_open = t.connections_open;
  s.sessions = p_.sessions.size();
  s.sessions_offline = t.sessions_offline;
  s.queued_memory = t.queued_memory;
  s.queued_store = t.queued_store;
  s.queued_bytes = t.queued_bytes;
  s.inflight = t.inflight;
  s.subscriptions = p_.router.tree().subscriptionCount();
  s.retained = p_.router.retained().size();
  s.output_buffered_bytes = p_.budget.total();
  s.output_memory_limit = p_.budget.limit();

  p_.router.tree().forEachGroup([&s](SharedGroup& g) {
    MetricsSnapshot::Group out;
    out.name = g.name;
    out.filter = g.filter;
    out.members = g.members.size();
    for (const auto& m : g.members) out.online += m.session->conn != nullptr;
    out.queued = g.queued();
    if (g.work) {
      out.inflight = g.work->inflight;
      out.delivered = g.work->delivered;
      out.redelivered = g.work->redelivered;
      out.dropped = g.work->dropped;
    }
    s.groups.push_back(std::move(out));
  });

  s.store_enabled = p_.durable.enabled();
  if (s.store_enabled) {
    persistence::Store& store = p_.durable.store();
    s.store_used_bytes = store.usedBytes();
    s.store_limit_bytes = store.mapSize();
    const persistence::StoreStats st = store.stats();
    s.store_messages = st.messages;
    s.store_queue_entries = st.queued;
    const persistence::CommitLatency& cl = store.commitLatency();
    s.commit_bounds.assign(std::begin(persistence::CommitLatency::kBounds), std::end(persistence::CommitLatency::kBounds));
    for (size_t i = 0; i <= persistence::CommitLatency::kBuckets; ++i) s.commit_counts.push_back(cl.bucket(i));
    s.commit_sum_s = cl.sumSeconds();
  }

  s.delayed_enabled = p_.delayed.enabled();
  s.delayed_pending = p_.delayed.pending();
  s.delayed_fired = p_.delayed.fired();
  s.delayed_dropped = p_.delayed.dropped();
  s.delayed_refused = p_.delayed.refused();

  for (const auto& b : p_.bridges) {
    MetricsSnapshot::Bridge out;
    out.name = b->name();
    out.up = b->up();
    out.forwarded = b->counters.forwarded;
    out.received = b->counters.received;
    out.reconnects = b->counters.reconnects;
    if (const Session* bs = b->session()) {
      out.queued = bs->queuedCount() + bs->inflight.size();
      out.dropped = bs->dropped;
    }
    s.bridges.push_back(std::move(out));
  }

  if (p_.cluster.enabled()) {
    const Cluster::Counters c = p_.cluster.counters();
    s.cluster.enabled = true;
    s.cluster.up = p_.cluster.connected();
    s.cluster.node = p_.cluster.nodeName();
    s.cluster.sent = c.sent;
    s.cluster.received = c.received;
    s.cluster.duplicates = c.duplicates;
    s.cluster.dropped = c.dropped;
    s.cluster.send_failed = c.send_failed;
    s.cluster.kept = c.kept;
    s.cluster.jetstream = p_.cluster.jetstream();
    s.cluster.retained_watching = c.retained_watching;
    s.cluster.sessions_watching = c.sessions_watching;
    s.cluster.retained_put = c.retained_put;
    s.cluster.retained_taken = c.retained_taken;
    s.cluster.retained_failed = c.retained_failed;
    s.cluster.taken_over = c.taken_over;
    s.cluster.stream_up = c.stream_ready;
    s.cluster.stream_stored = c.stream_stored;
    s.cluster.stream_failed = c.stream_failed;
    s.cluster.stream_taken = c.stream_taken;
    s.cluster.stream_waiting = c.stream_waiting;
    s.cluster.stream_overflow = c.stream_overflow;
    s.cluster.stream_unnamed = c.unnamed;
    s.cluster.stream_retried = c.stream_retried;
    s.cluster.moved_in = c.moved_in;
    s.cluster.moved_out = c.moved_out;
    s.cluster.moved_messages_in = c.moved_messages_in;
    s.cluster.moved_messages_out = c.moved_messages_out;
    s.cluster.move_failed = c.move_failed;
    s.cluster.adopted_nodes = c.adopted_nodes;
    s.cluster.adopted_sessions = c.adopted_sessions;
    s.cluster.adopted_messages = c.adopted_messages;
    s.cluster.adopt_failed = c.adopt_failed;
    s.cluster.groups = c.groups;
    s.cluster.group_stored = c.group_stored;
    s.cluster.group_taken = c.group_taken;
    s.cluster.group_returned = c.group_returned;
    s.cluster.group_held = c.group_held;
    s.cluster.replica = c.replica;
    s.cluster.replica_live = c.replica_live;
    s.cluster.replica_snapshots = c.replica_snapshots;
    s.cluster.replica_bytes = c.replica_bytes;
    s.cluster.replica_records = c.replica_records;
    s.cluster.replica_stalls = c.replica_stalls;
    for (const Cluster::NodeView& v : p_.cluster.nodes()) {
      const cluster::NodeStatus& st = v.status;
      s.cluster.nodes.push_back(
          {st.name, v.self, st.clients, st.sessions, st.filters, st.sent, st.received, st.retained, v.heard_ms_ago});
    }
  }

  s.lag_bounds.assign(std::begin(kLagBounds), std::end(kLagBounds));
  s.lag_counts.assign(std::begin(lag_counts_), std::end(lag_counts_));
  s.lag_sum_s = lag_sum_s_;
  s.lag_last_s = lag_last_s_;
  s.rates = rates_;
  s.history.assign(history_.begin(), history_.end());
  s.top_topics = top_.top();
  return s;
}

}  // namespace petrel
