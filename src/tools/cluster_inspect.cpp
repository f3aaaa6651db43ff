#include "src/tools/cluster_inspect.h"

#include <nats/nats.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <functional>
#include <map>
#include <random>
#include <string_view>

#include "src/cluster/nats_options.h"
#include "src/cluster/subjects.h"
#include "src/cluster/wire.h"

namespace petrel {

namespace {

// How long the nodes have to answer the query (they answer at once).
constexpr int64_t kAnswerMs = 1500;

void printBucket(natsConnection* nc, const ClusterConfig& cfg) {
  const std::string bucket = cfg.name + "_retained";
  if (!cfg.jetstream) {
    std::printf("retained messages: each node's own (cluster.jetstream: false)\n");
    return;
  }
  jsCtx* js = nullptr;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = natsConnection_JetStream(&js, nc, nullptr);
  const std::string stream = "KV_" + bucket;
  if (s == NATS_OK) s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK || !si) {
    std::printf("retained messages: bucket %s not readable: %s\n", bucket.c_str(), cluster::natsErrorText(s).c_str());
  } else {
    std::printf("retained messages: bucket %s: %" PRIu64 " entries (cleared topics included), %" PRIu64
                " bytes, %" PRId64 " replicas",
                bucket.c_str(), si->State.Msgs, si->State.Bytes, si->Config ? si->Config->Replicas : int64_t{0});
    if (si->Cluster && si->Cluster->Leader) std::printf(", leader %s", si->Cluster->Leader);
    std::printf("\n");
    jsStreamInfo_Destroy(si);
  }
  if (js) jsCtx_Destroy(js);
}

// One of the cluster's streams, with `label`: its messages, bytes,
// replicas and leader, then (`each`) a line per consumer.
void printStreamOf(natsConnection* nc, const std::string& stream, const char* label,
                   const std::function<void(const jsConsumerInfo&)>& each) {
  jsCtx* js = nullptr;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = natsConnection_JetStream(&js, nc, nullptr);
  if (s == NATS_OK) s = js_GetStreamInfo(&si, js, stream.c_str(), nullptr, &jerr);
  if (s != NATS_OK || !si) {
    std::printf("%s: stream %s not readable: %s\n", label, stream.c_str(), cluster::natsErrorText(s).c_str());
    if (js) jsCtx_Destroy(js);
    return;
  }
  std::printf("%s: stream %s: %" PRIu64 " waiting, %" PRIu64 " bytes, %" PRId64 " replicas", label, stream.c_str(),
              si->State.Msgs, si->State.Bytes, si->Config ? si->Config->Replicas : int64_t{0});
  if (si->Cluster && si->Cluster->Leader) std::printf(", leader %s", si->Cluster->Leader);
  std::printf("\n");
  jsStreamInfo_Destroy(si);
  jsConsumerInfoList* list = nullptr;
  if (js_Consumers(&list, js, stream.c_str(), nullptr, &jerr) == NATS_OK && list) {
    for (int i = 0; i < list->Count; ++i) each(*list->List[i]);
    jsConsumerInfoList_Destroy(list);
  }
  jsCtx_Destroy(js);
}

// QoS 1 and 2 messages on their way between nodes (src/cluster/stream.h):
// the stream, and per node what waits for it.
void printStream(natsConnection* nc, const ClusterConfig& cfg) {
  if (!cfg.jetstream) return;
  printStreamOf(nc, cfg.name + "_messages", "messages between nodes", [](const jsConsumerInfo& ci) {
    std::string name;
    if (!cluster::decodeLevel(ci.Name ? ci.Name : "", name)) name = ci.Name ? ci.Name : "?";
    std::printf("  for %s: %" PRIu64 " waiting, %" PRId64 " taken and not yet stored, %" PRId64 " taken again\n",
                name.c_str(), ci.NumPending, ci.NumAckPending, ci.NumRedelivered);
  });
}

// Share groups across the nodes (src/cluster/group_stream.h): the groups'
// stream, and per group what waits for a member.
void printGroups(natsConnection* nc, const ClusterConfig& cfg) {
  if (!cfg.jetstream) return;
  printStreamOf(nc, cfg.name + "_groups", "share groups", [](const jsConsumerInfo& ci) {
    // The consumer's description names the group ("... $share/<name>/<filter>").
    constexpr std::string_view kPrefix = "Petrel: share group ";
    std::string_view what = ci.Config && ci.Config->Description ? ci.Config->Description : "";
    if (what.substr(0, kPrefix.size()) == kPrefix) what.remove_prefix(kPrefix.size());
    else what = ci.Name ? ci.Name : "?";
    std::printf("  %.*s: %" PRIu64 " waiting, %" PRId64 " with members, %" PRId64 " taken again\n",
                int(what.size()), what.data(), ci.NumPending, ci.NumAckPending, ci.NumRedelivered);
  });
}

// The replicas of the nodes' stores (src/cluster/store_replica.h): the
// stream, and per node its snapshot's and its log's records.
void printReplicas(natsConnection* nc, const ClusterConfig& cfg) {
  if (!cfg.jetstream || !cfg.store_replica) return;
  const std::string stream = cfg.name + "_replica", filter = cfg.name + ".r.>";
  jsCtx* js = nullptr;
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  jsOptions o;
  jsOptions_Init(&o);
  o.Stream.Info.SubjectsFilter = filter.c_str();
  natsStatus s = natsConnection_JetStream(&js, nc, nullptr);
  if (s == NATS_OK) s = js_GetStreamInfo(&si, js, stream.c_str(), &o, &jerr);
  if (s != NATS_OK || !si) {
    std::printf("stores' replicas: stream %s not readable: %s\n", stream.c_str(), cluster::natsErrorText(s).c_str());
    if (js) jsCtx_Destroy(js);
    return;
  }
  std::printf("stores' replicas: stream %s: %" PRIu64 " records, %" PRIu64 " bytes, %" PRId64 " replicas\n",
              stream.c_str(), si->State.Msgs, si->State.Bytes, si->Config ? si->Config->Replicas : int64_t{0});
  // "<name>.r.<node>.s", ".e" (the snapshot) and ".l" (the log), by node.
  std::map<std::string, std::pair<uint64_t, uint64_t>> by_node;
  const std::string prefix = cfg.name + ".r.";
  if (si->State.Subjects) {
    for (int i = 0; i < si->State.Subjects->Count; ++i) {
      std::string_view subj = si->State.Subjects->List[i].Subject;
      if (subj.size() < prefix.size() + 2 || subj.substr(0, prefix.size()) != prefix) continue;
      const std::string_view token = subj.substr(prefix.size(), subj.size() - prefix.size() - 2);
      std::string node;
      if (!cluster::decodeLevel(token, node)) node = std::string(token);
      auto& counts = by_node[node];
      (subj.back() == 'l' ? counts.second : counts.first) += si->State.Subjects->List[i].Msgs;
    }
  }
  for (const auto& [node, counts] : by_node)
    std::printf("  %s: a snapshot in %" PRIu64 " records, %" PRIu64 " log records after it\n", node.c_str(),
                counts.first, counts.second);
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
}

}  // namespace

int inspectCluster(const ClusterConfig& cfg) {
  if (!cfg.enabled) {
    std::fprintf(stderr, "petrel inspect: the configuration has no cluster: section\n");
    return 2;
  }
  std::string err;
  natsOptions* opts = cluster::natsOptionsFor(cfg, "petrel inspect", err);
  if (!opts) {
    std::fprintf(stderr, "petrel inspect: %s\n", err.c_str());
    return 1;
  }
  natsConnection* nc = nullptr;
  natsStatus s = natsConnection_Connect(&nc, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) {
    std::fprintf(stderr, "petrel inspect: no NATS server of cluster.servers answers: %s\n",
                 cluster::natsErrorText(s).c_str());
    return 1;
  }
  char url[256] = {};
  natsConnection_GetConnectedUrl(nc, url, sizeof(url));
  std::printf("cluster %s, through %s\n", cfg.name.c_str(), url);

  // Every node answers a query with its status.
  const std::string subject = cluster::controlSubject(cfg.name);
  natsSubscription* sub = nullptr;
  s = natsConnection_SubscribeSync(&sub, nc, subject.c_str());
  std::random_device rd;
  const uint64_t id = (uint64_t(rd()) << 32 | rd()) | 1;
  std::string body;
  cluster::encodeControl(cluster::ControlKind::Query, id, 0, {}, body);
  if (s == NATS_OK) s = natsConnection_Publish(nc, subject.c_str(), body.data(), static_cast<int>(body.size()));
  if (s == NATS_OK) s = natsConnection_Flush(nc);
  std::map<std::string, cluster::NodeStatus> nodes;  // by name
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kAnswerMs);
  while (s == NATS_OK) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) break;
    natsMsg* msg = nullptr;
    if (natsSubscription_NextMsg(&msg, sub, left) != NATS_OK) break;
    cluster::Control c;
    cluster::NodeStatus st;
    if (cluster::decodeControl(reinterpret_cast<const uint8_t*>(natsMsg_GetData(msg)),
                               static_cast<size_t>(natsMsg_GetDataLength(msg)), c) &&
        c.kind == cluster::ControlKind::Status && cluster::decodeStatus(c.filter, st))
      nodes[st.name] = st;
    natsMsg_Destroy(msg);
  }
  if (s != NATS_OK) {
    std::fprintf(stderr, "petrel inspect: asking the nodes on %s: %s\n", subject.c_str(),
                 cluster::natsErrorText(s).c_str());
  }
  std::printf("nodes: %zu answered within %.1f s\n", nodes.size(), kAnswerMs / 1000.0);
  if (!nodes.empty()) {
    std::printf("  %-24s %10s %10s %8s %12s %12s %10s\n", "node", "clients", "sessions", "filters", "sent",
                "received", "retained");
    for (const auto& [name, st] : nodes)
      std::printf("  %-24s %10" PRIu64 " %10" PRIu64 " %8" PRIu64 " %12" PRIu64 " %12" PRIu64 " %10" PRIu64 "\n",
                  name.c_str(), st.clients, st.sessions, st.filters, st.sent, st.received, st.retained);
  }
  printBucket(nc, cfg);
  printStream(nc, cfg);
  printGroups(nc, cfg);
  printReplicas(nc, cfg);
  if (sub) natsSubscription_Destroy(sub);
  natsConnection_Close(nc);
  natsConnection_Destroy(nc);
  return s == NATS_OK ? 0 : 1;
}

}  // namespace petrel
