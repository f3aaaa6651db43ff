#include "src/tools/inspect.h"

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#include "persistence/store.h"

namespace petrel {

namespace {

// Delayed publishes ($delayed/<N>/<topic>), in due order: the first
// kDelayedShown, every one with -v.
constexpr size_t kDelayedShown = 20;

void printDelayed(const persistence::Store& store, uint64_t count, bool verbose) {
  using namespace persistence;
  std::printf("\ndelayed publishes (due order):\n  %-24s %-3s %-10s %s\n", "due (UTC)", "qos", "bytes",
              "topic");
  const size_t limit = verbose ? SIZE_MAX : kDelayedShown;
  size_t shown = store.readDelayed(DelayedKey{}, limit, [&](const DelayedKey& k) {
    char due[32];
    const time_t secs = static_cast<time_t>(k.due_ms / 1000);
    tm t;
    gmtime_r(&secs, &t);
    const size_t n = std::strftime(due, sizeof due, "%Y-%m-%dT%H:%M:%S", &t);
    std::snprintf(due + n, sizeof due - n, ".%03dZ", static_cast<int>(k.due_ms % 1000));
    MessageRecord m;
    if (!store.readDelayedMessage(k, m)) {
      std::printf("  %-24s (damaged record, message %llu)\n", due, static_cast<unsigned long long>(k.msg_id));
      return;
    }
    std::printf("  %-24s %-3u %-10zu %s%s\n", due, unsigned(m.qos), m.payload.size(), m.topic.c_str(),
                m.retain ? " (retain)" : "");
  });
  if (shown < count)
    std::printf("  ... and %llu more (-v lists every one)\n", static_cast<unsigned long long>(count - shown));
}

// Declared queues (`queues:`): the group queues whose entries carry the
// time they were queued, by queue name, with the age of the oldest.
void printQueues(const persistence::Store& store) {
  using namespace persistence;
  struct Row {
    std::string filter;
    Store::QueueInfo qi;
    int64_t first_at = 0;
  };
  std::vector<std::pair<std::string, Row>> rows;
  store.forEachQueueOwner("\x01share/", [&](std::string_view owner) {
    const std::string_view rest = owner.substr(7);
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return;
    Row r;
    r.filter = std::string(rest.substr(slash + 1));
    rows.emplace_back(std::string(rest.substr(0, slash)), std::move(r));
  });
  const int64_t now = static_cast<int64_t>(std::time(nullptr)) * 1000;
  bool header = false;
  for (auto& row : rows) {
    const std::string& name = row.first;
    Row& r = row.second;
    const std::string owner = "\x01share/" + name + "/" + r.filter;
    store.readQueue(owner, 0, 1, [&](const QueueRecord& q) { r.first_at = q.queued_at_ms; });
    if (!r.first_at) continue;  // an ordinary share group's queue
    r.qi = store.queueInfo(owner);
    if (!header) {
      std::printf("\nqueues (declared):\n  %-20s %-28s %-10s %-12s %s\n", "queue", "filter", "depth", "bytes",
                  "oldest age");
      header = true;
    }
    std::printf("  %-20s %-28s %-10llu %-12llu %llds\n", name.c_str(), r.filter.c_str(),
                static_cast<unsigned long long>(r.qi.count), static_cast<unsigned long long>(r.qi.bytes),
                static_cast<long long>(r.first_at < now ? (now - r.first_at) / 1000 : 0));
  }
}

}  // namespace

int inspectStore(const std::string& dir, bool verbose) {
  using namespace persistence;
  StoreOptions o;
  o.dir = dir;
  o.read_only = true;
  o.map_size = 0;
  std::string err;
  auto store = Store::open(o, err);
  if (!store) {
    std::fprintf(stderr, "petrel inspect: %s\n", err.c_str());
    return 1;
  }
  const StoreStats st = store->stats();
  std::printf("store %s/data.mdb\n", dir.c_str());
  std::printf("  size in use      %.1f MiB\n", st.used_bytes / 1048576.0);
  std::printf("  sessions         %llu\n", static_cast<unsigned long long>(st.sessions));
  std::printf("  subscriptions    %llu\n", static_cast<unsigned long long>(st.subscriptions));
  std::printf("  queued messages  %llu (queue entries)\n", static_cast<unsigned long long>(st.queued));
  std::printf("  stored messages  %llu (each stored once)\n", static_cast<unsigned long long>(st.messages));
  std::printf("  retained         %llu\n", static_cast<unsigned long long>(st.retained));
  std::printf("  inbound QoS 2    %llu (awaiting PUBREL)\n", static_cast<unsigned long long>(st.inbound_qos2));
  std::printf("  delayed          %llu (publishes waiting for their due time)\n",
              static_cast<unsigned long long>(st.delayed));

  std::map<std::string, std::vector<std::string>> subs;
  store->forEachSubscription(
      [&](std::string_view cid, const SubscriptionRecord& r) {
        subs[std::string(cid)].push_back(r.key + " (QoS " + std::to_string(r.qos) + ")");
      },
      err);
  std::printf("\nsessions:\n");
  std::printf("  %-32s %-5s %-12s %-10s %-12s %s\n", "client id", "mqtt", "expiry", "queued", "bytes", "subscriptions");
  bool ok = store->forEachSession(
      [&](std::string_view cid, const SessionRecord& r) {
        const auto qi = store->queueInfo(cid);
        std::string expiry = r.expiry_interval == 0xFFFFFFFF ? "never" : std::to_string(r.expiry_interval) + "s";
        const auto& list = subs[std::string(cid)];
        std::printf("  %-32.*s %-5s %-12s %-10llu %-12llu %zu%s\n", static_cast<int>(cid.size()), cid.data(),
                    r.version == 5 ? "5.0" : r.version == 4 ? "3.1.1" : "3.1", expiry.c_str(),
                    static_cast<unsigned long long>(qi.count), static_cast<unsigned long long>(qi.bytes),
                    list.size(), r.will ? " (will pending)" : "");
        if (verbose)
          for (const auto& s : list) std::printf("      %s\n", s.c_str());
      },
      err);
  if (!ok) {
    std::fprintf(stderr, "petrel inspect: %s\n", err.c_str());
    return 1;
  }
  // Shared subscription group queues (src/queues/shared_group.h names their owner
  // "\x01share/<name>/<filter>").
  bool header = false;
  store->forEachQueueOwner("\x01share/", [&](std::string_view owner) {
    if (!header) {
      std::printf("\nshare group queues:\n  %-40s %-10s %s\n", "group/filter", "queued", "bytes");
      header = true;
    }
    const auto qi = store->queueInfo(owner);
    const std::string_view name = owner.substr(7);
    std::printf("  %-40.*s %-10llu %llu\n", static_cast<int>(name.size()), name.data(),
                static_cast<unsigned long long>(qi.count), static_cast<unsigned long long>(qi.bytes));
  });
  printQueues(*store);
  if (st.delayed) printDelayed(*store, st.delayed, verbose);
  return 0;
}

}  // namespace petrel
