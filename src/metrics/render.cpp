// The two renderings of a MetricsSnapshot: Prometheus text (/metrics) and
// JSON (/api/v1/stats). README "Monitoring" lists every name written here.
#include <algorithm>

#include "src/metrics/exposition.h"
#include "src/metrics/json.h"
#include "src/metrics/snapshot.h"

namespace petrel {

namespace {
void histogram(Exposition& e, const char* name, const char* help, const std::vector<double>& bounds,
               const std::vector<uint64_t>& counts, double sum) {
  if (counts.size() != bounds.size() + 1) return;  // not measured
  e.histogram(name, help, bounds.data(), counts.data(), bounds.size(), sum);
}
}  // namespace

std::string prometheusText(const MetricsSnapshot& s) {
  Exposition e;
  const BrokerStats& st = s.stats;
  auto counter = [&e](const char* name, const char* help, uint64_t v) {
    e.family(name, "counter", help);
    e.sample(name, v);
  };
  auto gauge = [&e](const char* name, const char* help, double v) {
    e.family(name, "gauge", help);
    e.sample(name, v);
  };
  auto count = [&e](const char* name, const char* help, uint64_t v) {
    e.family(name, "gauge", help);
    e.sample(name, v);
  };

  e.family("petrel_build_info", "gauge", "The running version (always 1).");
  e.sample("petrel_build_info", uint64_t{1}, {{"version", s.version}});
  gauge("petrel_uptime_seconds", "Seconds since the broker started.", s.uptime_s);
  gauge("petrel_start_time_seconds", "When the broker started, in Unix time.", s.start_time_s);
  gauge("process_resident_memory_bytes", "Resident memory of the process.", s.resident_bytes);
  e.family("process_cpu_seconds_total", "counter", "CPU time of the process (user and system).");
  e.sample("process_cpu_seconds_total", s.cpu_seconds);
  if (!s.threads.empty()) {
    e.family("petrel_thread_cpu_seconds_total", "counter",
             "CPU time (user and system) of the broker's threads: main (sessions, routing, the store's batches), "
             "petrel-io-N (worker loops: sockets, TLS, WebSocket), petrel-store (commits), other (the rest).");
    for (const ThreadCpu& t : s.threads) e.sample("petrel_thread_cpu_seconds_total", t.seconds, {{"thread", t.thread}});
  }
  if (!s.loops.empty()) {
    e.family("petrel_loop_input_pauses_total", "counter",
             "Times a worker loop stopped reading its sockets because the main loop had 8 MiB of its input not yet "
             "handled (TCP then holds its clients back): the main loop is the limit.");
    for (const auto& l : s.loops) e.sample("petrel_loop_input_pauses_total", l.input_pauses, {{"thread", l.thread}});
    e.family("petrel_loop_output_waits_total", "counter",
             "Times the main loop stopped taking input because a worker loop had 8 MiB of output it had not yet "
             "taken up: that worker loop is the limit.");
    for (const auto& l : s.loops) e.sample("petrel_loop_output_waits_total", l.output_waits, {{"thread", l.thread}});
  }
  gauge("petrel_loop_lag_last_seconds", "How late the loop ran its last lag probe timer.", s.lag_last_s);
  histogram(e, "petrel_loop_lag_seconds", "How late the event loop runs a timer that is due (probed every 250 ms).",
            s.lag_bounds, s.lag_counts, s.lag_sum_s);

  // Connections and clients.
  count("petrel_connections_open", "MQTT connections open (bridge links included), not closing.", s.connections_open);
  counter("petrel_connections_total", "MQTT connections accepted on the listeners.", st.connections_total);
  e.family("petrel_connections_refused_total", "counter",
           "Connections refused before or at CONNECT, by reason (limit, auth, client_id, protocol, other).");
  for (size_t i = 0; i < kRefusalKinds; ++i)
    e.sample("petrel_connections_refused_total", st.connections_refused[i], {{"reason", kRefusalNames[i]}});
  counter("petrel_connects_total", "CONNECTs accepted.", st.connects_accepted);
  count("petrel_clients_connected", "Clients connected (CONNECT accepted), bridge links not included.",
        st.clients_connected);
  count("petrel_clients_connected_max", "The most clients connected at once since the start.", st.clients_maximum);
  count("petrel_sessions", "Sessions, online and offline.", s.sessions);
  count("petrel_sessions_offline", "Sessions without a connection.", s.sessions_offline);
  counter("petrel_sessions_expired_total", "Sessions that expired while offline.", st.sessions_expired);
  count("petrel_subscriptions", "Subscriptions (share group memberships included).", s.subscriptions);

  // Messages.
  static const char* const qos[3] = {"0", "1", "2"};
  e.family("petrel_messages_received_total", "counter", "PUBLISH received from clients and bridges, by QoS.");
  for (int q = 0; q < 3; ++q) e.sample("petrel_messages_received_total", st.received_by_qos[q], {{"qos", qos[q]}});
  e.family("petrel_messages_sent_total", "counter", "PUBLISH sent to clients and bridges (resends included), by QoS.");
  for (int q = 0; q < 3; ++q) e.sample("petrel_messages_sent_total", st.sent_by_qos[q], {{"qos", qos[q]}});
  e.family("petrel_messages_dropped_total", "counter", "Message copies dropped, by reason.");
  e.sample("petrel_messages_dropped_total", st.dropped_queue_full, {{"reason", "queue_full"}});
  e.sample("petrel_messages_dropped_total", st.messages_expired, {{"reason", "expired"}});
  e.sample("petrel_messages_dropped_total", st.qos0_dropped_output, {{"reason", "output_budget"}});
  e.sample("petrel_messages_dropped_total", st.dropped_too_large, {{"reason", "too_large"}});
  e.sample("petrel_messages_dropped_total", st.dropped_not_authorized, {{"reason", "not_authorized"}});
  counter("petrel_acknowledgement_reads_in_turn_total",
          "Reads of a subscriber with a full window handled ahead of other input: between other connections' "
          "reads in a loop turn (one loop), or in the urgent lane (worker loops).",
          st.ack_reads_between_reads);
  counter("petrel_received_bytes_total", "MQTT bytes received (after TLS).", st.bytes_received);
  counter("petrel_sent_bytes_total", "MQTT bytes sent (before TLS).", st.bytes_sent);
  count("petrel_retained_messages", "Retained messages.", s.retained);
  e.family("petrel_queued_messages", "gauge",
           "Messages waiting in session queues: in memory, and only in the store (beyond the memory window).");
  e.sample("petrel_queued_messages", s.queued_memory, {{"location", "memory"}});
  e.sample("petrel_queued_messages", s.queued_store, {{"location", "store"}});
  count("petrel_queued_bytes", "Payload bytes waiting in session queues.", s.queued_bytes);
  count("petrel_inflight_messages", "Outbound QoS 1 and 2 messages sent and not yet acknowledged.", s.inflight);
  count("petrel_output_buffered_bytes", "Output buffered for clients, not yet taken by their sockets.",
        s.output_buffered_bytes);
  count("petrel_output_memory_limit_bytes",
        "limits.max_output_memory in force (auto: a quarter of the RAM or of the cgroup's memory limit, at most 1 GiB): "
        "above it, the clients with the largest output buffers have their QoS 0 dropped.",
        s.output_memory_limit);

  // Share groups.
  struct GroupMetric {
    const char* name;
    const char* type;
    const char* help;
    uint64_t MetricsSnapshot::Group::*field;
  };
  static const GroupMetric group_metrics[] = {
      {"petrel_share_group_members", "gauge", "Members of a share group.", &MetricsSnapshot::Group::members},
      {"petrel_share_group_members_online", "gauge", "Members of a share group that are connected.",
       &MetricsSnapshot::Group::online},
      {"petrel_share_group_queued_messages", "gauge", "Messages waiting in a share group's queue.",
       &MetricsSnapshot::Group::queued},
      {"petrel_share_group_inflight_messages", "gauge", "Messages of a share group handed to members, not acknowledged.",
       &MetricsSnapshot::Group::inflight},
      {"petrel_share_group_delivered_total", "counter", "Messages a share group handed to members.",
       &MetricsSnapshot::Group::delivered},
      {"petrel_share_group_redelivered_total", "counter", "Messages a share group handed to another member again.",
       &MetricsSnapshot::Group::redelivered},
      {"petrel_share_group_dropped_total", "counter", "Messages a share group dropped.",
       &MetricsSnapshot::Group::dropped},
  };
  for (const GroupMetric& m : group_metrics) {
    e.family(m.name, m.type, m.help);
    for (const auto& g : s.groups) e.sample(m.name, g.*m.field, {{"group", g.name}, {"filter", g.filter}});
  }

  // Store.
  count("petrel_store_enabled", "1 when persistence is on.", uint64_t{s.store_enabled});
  if (s.store_enabled) {
    count("petrel_store_used_bytes", "Bytes of the store's pages in use.", s.store_used_bytes);
    count("petrel_store_limit_bytes", "The store's size cap (persistence.max_size_mb).", s.store_limit_bytes);
    count("petrel_store_messages", "Message records in the store.", s.store_messages);
    count("petrel_store_queue_entries", "Queue entries in the store (sessions and share groups).",
          s.store_queue_entries);
    histogram(e, "petrel_store_commit_duration_seconds",
              "Duration of the store's group commits (transaction and, with sync: fsync, the flush).",
              s.commit_bounds, s.commit_counts, s.commit_sum_s);
  }

  // Delayed publish.
  if (s.delayed_enabled) {
    count("petrel_delayed_pending_messages", "Delayed messages waiting until they are due.", s.delayed_pending);
    counter("petrel_delayed_fired_total", "Delayed messages published when due.", s.delayed_fired);
    counter("petrel_delayed_dropped_total", "Delayed messages dropped when due (expired or unreadable).",
            s.delayed_dropped);
    counter("petrel_delayed_refused_total", "Delayed publishes refused (bad delay, limits).", s.delayed_refused);
  }

  // Bridges.
  if (!s.bridges.empty()) {
    e.family("petrel_bridge_up", "gauge", "1 while the bridge's link is up.");
    for (const auto& b : s.bridges) e.sample("petrel_bridge_up", uint64_t{b.up}, {{"bridge", b.name}});
    struct BridgeMetric {
      const char* name;
      const char* type;
      const char* help;
      uint64_t MetricsSnapshot::Bridge::*field;
    };
    static const BridgeMetric bridge_metrics[] = {
        {"petrel_bridge_forwarded_total", "counter", "Messages a bridge sent to its remote broker.",
         &MetricsSnapshot::Bridge::forwarded},
        {"petrel_bridge_received_total", "counter", "Messages a bridge received from its remote broker.",
         &MetricsSnapshot::Bridge::received},
        {"petrel_bridge_queued_messages", "gauge", "Messages waiting in a bridge's out queue (in flight included).",
         &MetricsSnapshot::Bridge::queued},
        {"petrel_bridge_dropped_total", "counter", "Messages a bridge's out queue dropped at its limits.",
         &MetricsSnapshot::Bridge::dropped},
        {"petrel_bridge_reconnects_total", "counter", "Connection attempts of a bridge after its first.",
         &MetricsSnapshot::Bridge::reconnects},
    };
    for (const BridgeMetric& m : bridge_metrics) {
      e.family(m.name, m.type, m.help);
      for (const auto& b : s.bridges) e.sample(m.name, b.*m.field, {{"bridge", b.name}});
    }
  }

  // The cluster link.
  if (s.cluster.enabled) {
    const auto& c = s.cluster;
    e.family("petrel_cluster_up", "gauge", "1 while this node's link to NATS is up.");
    e.sample("petrel_cluster_up", uint64_t{c.up}, {{"node", c.node}});
    counter("petrel_cluster_sent_total", "Messages this node sent to the other nodes.", c.sent);
    counter("petrel_cluster_received_total", "Messages this node took from the other nodes.", c.received);
    counter("petrel_cluster_duplicates_total",
            "Copies of a message from another node through a second matching filter, taken once.", c.duplicates);
    counter("petrel_cluster_dropped_total",
            "Messages from other nodes lost on the way in (this node behind, or undecodable).", c.dropped);
    counter("petrel_cluster_send_failed_total",
            "Messages the NATS client refused to send (its buffer full while reconnecting).", c.send_failed);
    counter("petrel_cluster_kept_total", "Messages not sent to NATS: no other node has a filter that matches.",
            c.kept);
    e.family("petrel_cluster_nodes", "gauge", "Nodes of the cluster this node hears from, itself included.");
    e.sample("petrel_cluster_nodes", static_cast<uint64_t>(c.nodes.size()), {{"node", c.node}});
    // Every node's figures as its last status said (every 5 s), by node.
    auto per_node = [&](const char* name, const char* help, uint64_t MetricsSnapshot::Cluster::Node::*field) {
      e.family(name, "gauge", help);
      for (const auto& n : c.nodes) e.sample(name, n.*field, {{"node", n.name}});
    };
    per_node("petrel_cluster_node_clients", "Clients connected to each node of the cluster.",
             &MetricsSnapshot::Cluster::Node::clients);
    per_node("petrel_cluster_node_sessions", "Sessions (connected and offline durable) on each node of the cluster.",
             &MetricsSnapshot::Cluster::Node::sessions);
    if (c.jetstream) {
      e.family("petrel_cluster_retained_bucket_up", "gauge",
               "1 while the cluster's bucket of retained messages is open and watched.");
      e.sample("petrel_cluster_retained_bucket_up", uint64_t{c.retained_watching}, {{"node", c.node}});
      e.family("petrel_cluster_sessions_bucket_up", "gauge",
               "1 while the cluster's session registry (client id -> node) is open and watched.");
      e.sample("petrel_cluster_sessions_bucket_up", uint64_t{c.sessions_watching}, {{"node", c.node}});
      counter("petrel_cluster_retained_put_total",
              "Retained messages (and clearings) of this node the cluster's bucket took.", c.retained_put);
      counter("petrel_cluster_retained_taken_total",
              "Retained messages of other nodes taken from the bucket into this node's store.", c.retained_taken);
      counter("petrel_cluster_taken_over_total",
              "Clients of this node whose connection closed (0x8E) because they connected to another node.",
              c.taken_over);
      counter("petrel_cluster_retained_failed_total",
              "Retained messages the bucket refused (larger than NATS allows, a bad key); they stay on this node.",
              c.retained_failed);
      e.family("petrel_cluster_stream_up", "gauge",
               "1 while the cluster's stream (QoS 1 and 2 messages between nodes) and this node's consumer are open.");
      e.sample("petrel_cluster_stream_up", uint64_t{c.stream_up}, {{"node", c.node}});
      counter("petrel_cluster_stream_stored_total",
              "Copies of QoS 1 and 2 messages for other nodes the cluster's stream stored.", c.stream_stored);
      counter("petrel_cluster_stream_failed_total",
              "Copies for other nodes the stream refused for good (larger than NATS allows).", c.stream_failed);
      counter("petrel_cluster_stream_taken_total", "Copies for this node taken from the stream.", c.stream_taken);
      counter("petrel_cluster_stream_overflow_total",
              "QoS 1 and 2 messages sent to other nodes at most once: too many copies waited for the stream.",
              c.stream_overflow);
      counter("petrel_cluster_stream_unnamed_total",
              "QoS 1 and 2 messages sent to another node at most once: it had not said its name yet.",
              c.stream_unnamed);
      counter("petrel_cluster_stream_retried_total",
              "Stream messages (batches of copies) published again after JetStream did not answer.",
              c.stream_retried);
      counter("petrel_cluster_sessions_moved_in_total",
              "Durable sessions taken from other nodes (their clients connected here).", c.moved_in);
      counter("petrel_cluster_sessions_moved_out_total",
              "Durable sessions other nodes took from this one (their clients connected there).", c.moved_out);
      counter("petrel_cluster_moved_messages_in_total", "Queued messages moved here with sessions.",
              c.moved_messages_in);
      counter("petrel_cluster_moved_messages_out_total", "Queued messages this node sent with sessions that moved.",
              c.moved_messages_out);
      counter("petrel_cluster_session_moves_failed_total",
              "Session moves given up: the other node did not answer in time, or sent a part that could not be read.",
              c.move_failed);
      counter("petrel_cluster_adopted_nodes_total",
              "Nodes that were down whose durable sessions this node took.", c.adopted_nodes);
      counter("petrel_cluster_adopted_sessions_total", "Durable sessions taken here from nodes that were down.",
              c.adopted_sessions);
      counter("petrel_cluster_adopted_messages_total",
              "Queued messages and delayed publishes those sessions and nodes brought.", c.adopted_messages);
      counter("petrel_cluster_adoptions_failed_total",
              "Down nodes whose sessions could not be taken (no replica of their store, a read that failed).",
              c.adopt_failed);
      e.family("petrel_cluster_stream_waiting", "gauge", "Copies for other nodes not stored by the stream yet.");
      e.sample("petrel_cluster_stream_waiting", c.stream_waiting, {{"node", c.node}});
      counter("petrel_cluster_group_stored_total",
              "Share groups' copies of messages routed here that the groups' stream stored (or had already).",
              c.group_stored);
      counter("petrel_cluster_group_taken_total", "Share group messages taken from the groups' stream for members here.",
              c.group_taken);
      counter("petrel_cluster_group_returned_total",
              "Share group messages given back to the groups' stream: no member here could take them.",
              c.group_returned);
      e.family("petrel_cluster_groups", "gauge", "Share groups with members here, read from the groups' stream.");
      e.sample("petrel_cluster_groups", c.groups, {{"node", c.node}});
      e.family("petrel_cluster_group_held", "gauge",
               "Share group messages taken from the groups' stream and not yet acknowledged by a member here.");
      e.sample("petrel_cluster_group_held", c.group_held, {{"node", c.node}});
      if (c.replica) {
        e.family("petrel_cluster_replica_live", "gauge",
                 "1 while acknowledgements wait for the replica of this node's store in JetStream.");
        e.sample("petrel_cluster_replica_live", uint64_t(c.replica_live ? 1 : 0), {{"node", c.node}});
        e.family("petrel_cluster_replica_bytes", "gauge",
                 "Bytes of the replica of this node's store: its last snapshot and the log after it.");
        e.sample("petrel_cluster_replica_bytes", c.replica_bytes, {{"node", c.node}});
        counter("petrel_cluster_replica_snapshots_total", "Snapshots of this node's store stored in its replica.",
                c.replica_snapshots);
        counter("petrel_cluster_replica_records_total", "Log records of this node's store stored in its replica.",
                c.replica_records);
        counter("petrel_cluster_replica_stalls_total",
                "Times the replica stopped being live (JetStream did not store for 10 s, or fell 64 MB behind).",
                c.replica_stalls);
      }
    }
  }
  return e.take();
}

std::string statsJson(const MetricsSnapshot& s, size_t max_groups) {
  const BrokerStats& st = s.stats;
  JsonWriter j;
  j.beginObject();
  j.member("version", s.version);
  j.member("uptime_seconds", s.uptime_s);
  j.key("clients").beginObject();
  j.member("connected", st.clients_connected);
  j.member("maximum", st.clients_maximum);
  j.member("sessions", s.sessions);
  j.member("sessions_offline", s.sessions_offline);
  j.member("connections_total", st.connections_total);
  j.endObject();

  auto rates = [&j](const MetricsSnapshot::Rates& r) {
    j.beginObject();
    j.member("received_per_second", r.received);
    j.member("sent_per_second", r.sent);
    j.member("received_bytes_per_second", r.bytes_received);
    j.member("sent_bytes_per_second", r.bytes_sent);
    j.member("clients", r.clients);
    j.endObject();
  };
  j.key("rates");
  rates(s.rates);
  j.key("history").beginArray();
  for (const auto& h : s.history) rates(h);
  j.endArray();

  uint64_t received = 0, sent = 0;
  for (int q = 0; q < 3; ++q) {
    received += st.received_by_qos[q];
    sent += st.sent_by_qos[q];
  }
  j.key("messages").beginObject();
  j.member("received", received);
  j.member("sent", sent);
  j.member("dropped", st.messages_dropped);
  j.member("retained", s.retained);
  j.member("queued", s.queued_memory + s.queued_store);
  j.member("queued_bytes", s.queued_bytes);
  uint64_t in_groups = 0;
  for (const auto& g : s.groups) in_groups += g.queued;
  j.member("queued_in_groups", in_groups);
  j.member("inflight", s.inflight);
  j.member("subscriptions", s.subscriptions);
  j.endObject();

  j.key("top_topics").beginArray();
  for (const auto& t : s.top_topics) {
    j.beginObject();
    j.member("topic", t.topic);
    j.member("per_second", t.per_second);
    j.endObject();
  }
  j.endArray();

  // The deepest queues first.
  std::vector<const MetricsSnapshot::Group*> groups;
  groups.reserve(s.groups.size());
  for (const auto& g : s.groups) groups.push_back(&g);
  std::sort(groups.begin(), groups.end(), [](const auto* a, const auto* b) {
    if (a->queued != b->queued) return a->queued > b->queued;
    return a->name != b->name ? a->name < b->name : a->filter < b->filter;
  });
  if (groups.size() > max_groups) groups.resize(max_groups);
  j.member("share_groups_total", uint64_t{s.groups.size()});
  j.key("share_groups").beginArray();
  for (const auto* g : groups) {
    j.beginObject();
    j.member("group", g->name);
    j.member("filter", g->filter);
    j.member("members", g->members);
    j.member("online", g->online);
    j.member("queued", g->queued);
    j.member("inflight", g->inflight);
    j.member("delivered", g->delivered);
    j.member("redelivered", g->redelivered);
    j.member("dropped", g->dropped);
    j.endObject();
  }
  j.endArray();

  j.key("store").beginObject();
  j.member("enabled", s.store_enabled);
  j.member("used_bytes", s.store_used_bytes);
  j.member("limit_bytes", s.store_limit_bytes);
  j.member("messages", s.store_messages);
  j.member("queue_entries", s.store_queue_entries);
  uint64_t commits = 0;
  for (uint64_t c : s.commit_counts) commits += c;
  j.member("commits", commits);
  j.member("commit_average_seconds", commits ? s.commit_sum_s / static_cast<double>(commits) : 0.0);
  j.endObject();

  j.key("bridges").beginArray();
  for (const auto& b : s.bridges) {
    j.beginObject();
    j.member("name", b.name);
    j.member("up", b.up);
    j.member("forwarded", b.forwarded);
    j.member("received", b.received);
    j.member("queued", b.queued);
    j.member("dropped", b.dropped);
    j.member("reconnects", b.reconnects);
    j.endObject();
  }
  j.endArray();

  j.key("delayed").beginObject();
  j.member("enabled", s.delayed_enabled);
  j.member("pending", s.delayed_pending);
  j.member("fired", s.delayed_fired);
  j.member("dropped", s.delayed_dropped);
  j.member("refused", s.delayed_refused);
  j.endObject();

  j.key("cluster").beginObject();
  j.member("enabled", s.cluster.enabled);
  if (s.cluster.enabled) {
    j.member("up", s.cluster.up);
    j.member("node", s.cluster.node);
    j.member("sent", s.cluster.sent);
    j.member("received", s.cluster.received);
    j.member("duplicates", s.cluster.duplicates);
    j.member("dropped", s.cluster.dropped);
    j.member("send_failed", s.cluster.send_failed);
    j.member("kept", s.cluster.kept);
    j.key("nodes").beginArray();
    for (const auto& n : s.cluster.nodes) {
      j.beginObject();
      j.member("name", n.name);
      j.member("self", n.self);
      j.member("clients", n.clients);
      j.member("sessions", n.sessions);
      j.member("filters", n.filters);
      j.member("sent", n.sent);
      j.member("received", n.received);
      j.member("retained", n.retained);
      j.member("heard_ms_ago", n.heard_ms_ago);
      j.endObject();
    }
    j.endArray();
    if (s.cluster.jetstream) {
      j.key("retained").beginObject();
      j.member("bucket_up", s.cluster.retained_watching);
      j.member("put", s.cluster.retained_put);
      j.member("taken", s.cluster.retained_taken);
      j.member("failed", s.cluster.retained_failed);
      j.endObject();
      j.member("taken_over", s.cluster.taken_over);
      j.member("sessions_bucket_up", s.cluster.sessions_watching);
      j.key("stream").beginObject();
      j.member("up", s.cluster.stream_up);
      j.member("stored", s.cluster.stream_stored);
      j.member("failed", s.cluster.stream_failed);
      j.member("taken", s.cluster.stream_taken);
      j.member("waiting", s.cluster.stream_waiting);
      j.member("overflow", s.cluster.stream_overflow);
      j.member("unnamed", s.cluster.stream_unnamed);
      j.member("retried", s.cluster.stream_retried);
      j.endObject();
      j.key("moves").beginObject();
      j.member("in", s.cluster.moved_in);
      j.member("out", s.cluster.moved_out);
      j.member("messages_in", s.cluster.moved_messages_in);
      j.member("messages_out", s.cluster.moved_messages_out);
      j.member("failed", s.cluster.move_failed);
      j.endObject();
      j.key("adopted").beginObject();
      j.member("nodes", s.cluster.adopted_nodes);
      j.member("sessions", s.cluster.adopted_sessions);
      j.member("messages", s.cluster.adopted_messages);
      j.member("failed", s.cluster.adopt_failed);
      j.endObject();
      j.key("groups").beginObject();
      j.member("count", s.cluster.groups);
      j.member("stored", s.cluster.group_stored);
      j.member("taken", s.cluster.group_taken);
      j.member("returned", s.cluster.group_returned);
      j.member("held", s.cluster.group_held);
      j.endObject();
      if (s.cluster.replica) {
        j.key("replica").beginObject();
        j.member("live", s.cluster.replica_live);
        j.member("snapshots", s.cluster.replica_snapshots);
        j.member("bytes", s.cluster.replica_bytes);
        j.member("records", s.cluster.replica_records);
        j.member("stalls", s.cluster.replica_stalls);
        j.endObject();
      }
    }
  }
  j.endObject();

  j.member("loop_lag_seconds", s.lag_last_s);
  j.key("thread_cpu_seconds").beginObject();
  for (const ThreadCpu& t : s.threads) j.member(t.thread, t.seconds);
  j.endObject();
  j.key("loops").beginObject();
  for (const auto& l : s.loops) {
    j.key(l.thread).beginObject();
    j.member("input_pauses", l.input_pauses);
    j.member("output_waits", l.output_waits);
    j.endObject();
  }
  j.endObject();
  j.endObject();
  return j.take();
}

}  // namespace petrel
