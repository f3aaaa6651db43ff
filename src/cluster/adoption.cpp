#include "src/cluster/adoption.h"

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <unordered_map>

#include "persistence/store.h"
#include "src/cluster/cluster.h"
#include "src/cluster/nats_options.h"
#include "src/cluster/store_replica.h"
#include "src/delayed/delayed_publish.h"
#include "src/durable/durable.h"
#include "src/durable/records.h"
#include "src/queues/shared_groups.h"
#include "src/routing/router.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"
#include "src/timers/loop_timers.h"
#include "src/util/log.h"

namespace petrel {

namespace {
constexpr uint64_t kTickMs = 50;
constexpr size_t kRead = 256;
constexpr uint64_t kScratchMapBytes = 64ull << 30;  // sparse: the scratch store's cap, not its size
constexpr int kAdoptReadPatienceMs = 10000;  // reading the replica of a node taken over, per try
}  // namespace

Adoption::Adoption(const Parts& p)
    : cluster_(p.cluster),
      sessions_(p.sessions),
      router_(p.router),
      durable_(p.durable),
      delayed_(p.delayed),
      timers_(p.timers),
      clock_(p.clock),
      scratch_dir_(p.scratch_dir),
      timer_(&Adoption::onTimer, this) {}

Adoption::~Adoption() { stop(); }

void Adoption::stop() {
  for (auto& [token, j] : jobs_) {
    if (j->thread.joinable()) j->thread.join();
    if (j->mark_thread.joinable()) j->mark_thread.join();
    j->scratch.reset();
  }
}

void Adoption::onTimer(Timer& t) { t.owner<Adoption>()->tick(); }

void Adoption::arm() {
  if (!timer_.armed() && !jobs_.empty()) timers_.armAfter(timer_, kTickMs);
}

bool Adoption::busy(const std::string& token) const {
  auto it = jobs_.find(token);
  return it != jobs_.end() && it->second->state != Job::State::Done;
}

bool Adoption::possible() const {
  return durable_.enabled() && cluster_.jetstream() && cluster_.config().store_replica;
}

bool Adoption::begin(const std::string& token, const std::string& name) {
  if (!possible()) return false;
  if (auto it = jobs_.find(token); it != jobs_.end()) {
    // Begun, or taken already (it has not come back since: tick()).
    Job& old = *it->second;
    if (!old.failed || static_cast<int64_t>(timers_.now()) - old.finished_ms < int64_t(kRetryAfterMs)) return true;
    if (old.mark_thread.joinable()) old.mark_thread.join();
    jobs_.erase(it);  // failed a while ago: tried again
  }
  auto job = std::make_unique<Job>();
  Job& j = *job;
  j.token = token;
  j.name = name.empty() ? token : name;
  j.tag = next_tag_++;
  jobs_[token] = std::move(job);
  LOG_NOTICE("cluster: node %s is down: this node takes its durable sessions (reading its replica)", j.name.c_str());
  read(j);
  arm();
  return true;
}

void Adoption::wait(const std::string& token, const std::string& client_id, uint64_t ticket) {
  auto it = jobs_.find(token);
  if (it == jobs_.end() || it->second->state == Job::State::Done) {
    ready_.push_back(ticket);  // goes on at the next tick (not from within the caller)
    if (!timer_.armed()) timers_.armAfter(timer_, kTickMs);
    return;
  }
  addWaiting(*it->second, client_id, ticket);
}

void Adoption::addWaiting(Job& j, const std::string& client_id, uint64_t ticket) {
  for (auto& [client, t] : j.waiting) {
    if (client != client_id) continue;
    // The client connected again (it gave up waiting): the older
    // connection closes, the newer CONNECT waits in its place.
    const uint64_t older = t;
    t = ticket;
    if (on_done_) on_done_(older, true);
    return;
  }
  j.waiting.emplace_back(client_id, ticket);
}

bool Adoption::waitFor(const std::string& client_id, uint64_t ticket) {
  if (!holding(client_id)) return false;
  for (auto& [token, j] : jobs_) {
    if (j->state == Job::State::Done) continue;
    if (std::find(j->clients.begin(), j->clients.end(), client_id) == j->clients.end()) continue;
    addWaiting(*j, client_id, ticket);
    return true;
  }
  return false;
}

namespace {

// The replica under `prefix` read into a new scratch store in `dir`; null
// with `err` on failure. `retry` false: reading again would not help.
std::unique_ptr<persistence::Store> readInto(const std::string& dir, const std::string& stream,
                                             const std::string& prefix, __natsConnection* nc, std::string& err,
                                             bool& retry) {
  retry = false;
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  std::filesystem::create_directories(dir, ec);
  persistence::StoreOptions so;
  so.dir = dir;
  so.sync = persistence::SyncMode::Periodic;
  so.map_size = kScratchMapBytes;
  std::unique_ptr<persistence::Store> store = persistence::Store::open(so, err, nullptr);
  if (!store) {
    err = "a scratch store in " + dir + ": " + err;
    return nullptr;
  }
  int st = NATS_OK;
  jsCtx* js = cluster::jetStreamOf(nc, cluster::StoreReplicaStream::kWaitMs, st);
  if (!js) {
    err = "JetStream: " + cluster::natsErrorText(st);
    retry = true;
    return nullptr;
  }
  cluster::RestoreReport r;
  // Not long per try: the adoption is tried again anyway, and a node
  // stopping waits for this thread.
  const bool ok = cluster::restoreReplica(js, stream, prefix, *store, r, err, kAdoptReadPatienceMs);
  jsCtx_Destroy(js);
  if (!ok) {
    retry = true;  // no answer, a new leader being elected
    return nullptr;
  }
  if (!r.found) {
    err = "stream " + stream + " holds no replica of it";
    return nullptr;
  }
  return store;
}

}  // namespace

// On a thread of its own: the node's replica into a scratch store.
// JetStream may not answer for a while (a server gone with the node, a
// new leader being elected): read again from the start, a few times.
void Adoption::read(Job& j) {
  const std::string dir = scratch_dir_ + "/" + j.token;
  const ClusterConfig& cfg = cluster_.config();
  const std::string stream = cfg.name + "_replica";
  const std::string prefix = cfg.name + ".r." + j.token + ".";
  __natsConnection* nc = cluster_.natsConnection();
  j.thread = std::thread([&j, dir, stream, prefix, nc] {
    std::string err;
    std::unique_ptr<persistence::Store> store;
    bool retry = true;
    for (int attempt = 0; !store && retry && attempt < kReadAttempts; ++attempt) {
      if (attempt) std::this_thread::sleep_for(std::chrono::milliseconds(kReadRetryMs));
      store = readInto(dir, stream, prefix, nc, err, retry);
    }
    j.error = err;
    const bool ok = store != nullptr;
    j.scratch = std::move(store);
    j.read.store(ok ? 1 : -1);
  });
}

// The down node's sessions, queues and delayed publishes into this
// node's store, in one batch.
void Adoption::write(Job& j) {
  persistence::Store& sc = *j.scratch;
  persistence::Batch& b = durable_.batch();
  auto& taken = j.taken;
  std::string err;
  bool ok = sc.forEachSession(
      [&](std::string_view id, const persistence::SessionRecord& r) {
        const std::string client(id);
        // A bridge's out queue ("$bridge/<name>") stays with its node: its
        // bridge forwards it when the node is back.
        if (client.compare(0, 8, "$bridge/") == 0) return;
        // The registry gives it to another node now (it moved before the
        // node went down, or reconnected elsewhere since): not the node's.
        const std::string* owner = cluster_.registeredToken(client);
        if (owner && *owner != j.token) return;
        taken[client].record = r;
      },
      err);
  ok = ok && sc.forEachSubscription(
                 [&](std::string_view id, const persistence::SubscriptionRecord& r) {
                   auto it = taken.find(std::string(id));
                   if (it != taken.end()) it->second.subscriptions.push_back(r);
                 },
                 err);
  ok = ok && sc.forEachInboundQos2(
                 [&](std::string_view id, uint16_t pid) {
                   auto it = taken.find(std::string(id));
                   if (it != taken.end()) it->second.inbound_qos2.push_back(pid);
                 },
                 err);
  if (!ok) {
    j.error = "reading the replica read back: " + err;
    return finish(j, false);
  }
  for (auto& entry : taken) {
    const std::string& client = entry.first;  // (a structured binding cannot be captured)
    Taken& t = entry.second;
    if (Session* old = sessions_.find(client)) {
      if (old->conn) {
        LOG_WARN("client %s: connected here while the registry gave it to node %s; its session there is not taken",
                 client.c_str(), j.name.c_str());
        continue;
      }
      // An older copy here (the client was on this node before it was on
      // the down node) gives way.
      old->will.reset();
      sessions_.end(old);
    }
    // A will stays: the client's connection ended with its node, without a
    // DISCONNECT, so the will goes out after its delay, from here, as
    // after a restart (Sessions::restore).
    uint64_t from = 0;
    for (;;) {
      std::vector<persistence::QueueRecord> recs;
      const size_t n = sc.readQueue(client, from, kRead, [&](persistence::QueueRecord& q) {
        from = q.seq + 1;
        // A share group's message in flight to it: its group has it back
        // (the groups' stream, or what the group held, below).
        if (q.group.empty()) recs.push_back(std::move(q));
      });
      std::vector<uint64_t> ids;
      ids.reserve(recs.size());
      for (const auto& q : recs) ids.push_back(q.msg_id);
      size_t i = 0;
      sc.readMessages(ids, [&](uint64_t id, persistence::MessageRecord&& m) {
        while (i < recs.size() && recs[i].msg_id != id) ++i;
        if (i == recs.size()) return;
        const uint64_t mine = durable_.newMessageId();
        b.putMessage(mine, m, 1);
        recs[i].msg_id = mine;
        b.putQueue(client, recs[i]);
        ++j.messages;
        ++i;
      });
      if (n < kRead) break;
    }
    b.putSession(client, t.record);
    for (const auto& s : t.subscriptions) b.putSubscription(client, s);
    for (uint16_t id : t.inbound_qos2) b.putInboundQos2(client, id);
    j.clients.push_back(client);
    holding_.insert(client);
  }
  // Its delayed publishes wait here now, due when they were.
  persistence::DelayedKey after{};
  for (;;) {
    std::vector<persistence::DelayedKey> keys;
    const size_t n = sc.readDelayed(after, kRead, [&](const persistence::DelayedKey& k) { keys.push_back(k); });
    for (const auto& k : keys) {
      persistence::MessageRecord m;
      if (!sc.readDelayedMessage(k, m)) continue;
      MessagePtr msg = messageFromRecord(std::move(m), durable_.newMessageId());
      if (delayed_.schedule(msg, k.due_ms) == mqtt::Reason::Success) ++j.messages;
      else LOG_WARN("cluster: a delayed publish of node %s to %s could not be kept here (delayed publish off, or "
                    "delayed.max_pending reached)", j.name.c_str(), msg->topic.c_str());
    }
    if (n < kRead) break;
    after = keys.back();
  }
  j.sessions = j.clients.size();
  j.commit_ticket = durable_.awaitedTicket();
  j.state = Job::State::Writing;
}

void Adoption::afterCommit(uint64_t committed) {
  for (auto& [token, j] : jobs_)
    if (j->state == Job::State::Writing && j->commit_ticket <= committed) install(*j);
}

// Committed: the sessions exist here, the others are told, and the down
// node's consumer is read.
void Adoption::install(Job& j) {
  const int64_t wall = clock_.wallMs();
  auto taken = std::move(j.taken);
  j.taken.clear();
  for (const std::string& client : j.clients) {
    if (sessions_.find(client)) {
      LOG_ERROR("client %s: a session appeared here while node %s's was taken; that one stays", client.c_str(),
                j.name.c_str());
      continue;
    }
    Taken& t = taken[client];
    Session& s = sessions_.restore(client, t.record, wall);
    for (const auto& r : t.subscriptions) sessions_.restoreSubscription(s, r);
    for (uint16_t id : t.inbound_qos2) s.inbound_qos2.insert(id);
    s.adopted_from = j.tag;
    cluster_.clientConnected(client);
  }
  // What the node's share groups held, to the groups here (their members
  // among the sessions just taken made them, or they were here already).
  persistence::Store& sc = *j.scratch;
  uint64_t lost = 0;
  sc.forEachQueueOwner("\x01share/", [&](std::string_view owner) {
    SharedGroup* g = router_.groups().byOwner(owner);
    uint64_t from = 0;
    for (;;) {
      std::vector<persistence::QueueRecord> recs;
      const size_t n = sc.readQueue(owner, from, kRead, [&](persistence::QueueRecord& q) {
        from = q.seq + 1;
        recs.push_back(std::move(q));
      });
      std::vector<uint64_t> ids;
      for (const auto& q : recs) ids.push_back(q.msg_id);
      sc.readMessages(ids, [&](uint64_t, persistence::MessageRecord&& m) {
        MessagePtr msg = messageFromRecord(std::move(m), durable_.newMessageId());
        if (g && router_.groups().enqueue(*g, msg)) {
          durable_.putMessage(*msg, 1);
          ++j.messages;
        } else {
          ++lost;
        }
      });
      if (n < kRead) break;
    }
    if (g) router_.groups().dispatch(*g);
  });
  if (lost)
    LOG_ERROR("cluster: %llu messages node %s's share groups held have no group here to go to",
              static_cast<unsigned long long>(lost), j.name.c_str());
  LOG_NOTICE("cluster: node %s's durable sessions are served here: %llu sessions, %llu queued messages",
             j.name.c_str(), static_cast<unsigned long long>(j.sessions), static_cast<unsigned long long>(j.messages));
  counters_.sessions += j.sessions;
  counters_.messages += j.messages;
  ++counters_.nodes;
  cluster_.standIn(j.token, j.tag);
  cluster_.sendAdopted(j.token);
  // The share groups' messages are committed before the replica goes.
  j.groups_ticket = durable_.batch().empty() ? 0 : durable_.awaitedTicket();
  j.told_ms = static_cast<int64_t>(timers_.now());
  j.state = Job::State::Settling;
  j.scratch.reset();
  std::error_code ec;
  std::filesystem::remove_all(scratch_dir_ + "/" + j.token, ec);
}

// Its replica is marked taken and purged: the node does not serve the
// sessions again when it starts.
void Adoption::mark(Job& j) {
  j.marked = true;
  const ClusterConfig& cfg = cluster_.config();
  const std::string stream = cfg.name + "_replica";
  const std::string prefix = cfg.name + ".r." + j.token + ".";
  const std::string by = cluster_.nodeName();
  __natsConnection* nc = cluster_.natsConnection();
  const std::string name = j.name;
  j.mark_thread = std::thread([stream, prefix, by, nc, name] {
    int st = NATS_OK;
    jsCtx* js = cluster::jetStreamOf(nc, cluster::StoreReplicaStream::kWaitMs, st);
    std::string err = "JetStream: " + cluster::natsErrorText(st);
    if (!js || !cluster::markAdopted(js, stream, prefix, by, err))
      LOG_ERROR("cluster: node %s's replica could not be marked as taken (%s): started again, it would serve "
                "the sessions this node took as well", name.c_str(), err.c_str());
    if (js) jsCtx_Destroy(js);
  });
}

void Adoption::finish(Job& j, bool ok) {
  j.state = Job::State::Done;
  j.failed = !ok;
  j.finished_ms = static_cast<int64_t>(timers_.now());
  for (const std::string& c : j.clients) holding_.erase(c);
  if (!ok) {
    ++counters_.failed;
    LOG_ERROR("cluster: node %s's durable sessions could not be taken: %s; its clients connect without them",
              j.name.c_str(), j.error.c_str());
    j.scratch.reset();
    std::error_code ec;
    std::filesystem::remove_all(scratch_dir_ + "/" + j.token, ec);
  }
  auto waiting = std::move(j.waiting);
  j.waiting.clear();
  for (const auto& w : waiting)
    if (on_done_) on_done_(w.second, false);
}

void Adoption::tick() {
  const int64_t now = static_cast<int64_t>(timers_.now());
  if (!ready_.empty()) {
    std::vector<uint64_t> ready = std::move(ready_);
    ready_.clear();
    for (uint64_t t : ready)
      if (on_done_) on_done_(t, false);
  }
  std::vector<std::string> gone;
  for (auto& [token, jp] : jobs_) {
    Job& j = *jp;
    switch (j.state) {
      case Job::State::Reading: {
        const int r = j.read.load();
        if (r == 0) break;
        j.thread.join();
        if (r < 0) {
          finish(j, false);
        } else if (cluster_.nodeHeard(j.token)) {
          j.error = "it is back";
          finish(j, false);
        } else {
          write(j);
        }
        break;
      }
      case Job::State::Writing: break;
      case Job::State::Settling:
        if (!j.marked && durable_.committed() >= j.groups_ticket) mark(j);
        // What the others sent the node before they forgot its filters
        // is in its consumer by now.
        if (now - j.told_ms >= int64_t(kSettleMs) && cluster_.standInReady(j.token)) {
          j.settled_mark = cluster_.standInSettled(j.token);
          j.state = Job::State::Draining;
        } else if (now - j.told_ms > int64_t(kDrainMaxMs)) {
          LOG_WARN("cluster: node %s's consumer of the cluster's stream could not be read in time; what it holds "
                   "goes to its sessions here when it can", j.name.c_str());
          finish(j, true);
        }
        break;
      case Job::State::Draining:
        if (!j.marked && durable_.committed() >= j.groups_ticket) mark(j);
        if (cluster_.standInSettled(j.token) >= j.settled_mark + 2 || now - j.told_ms > int64_t(kDrainMaxMs)) {
          LOG_INFO("cluster: node %s: what the cluster's stream held for it is taken", j.name.c_str());
          finish(j, true);
        }
        break;
      case Job::State::Done:
        if (!j.failed && !j.marked && durable_.committed() >= j.groups_ticket) mark(j);
        // Back (its status came again): it reads its consumer itself again.
        if (cluster_.nodeHeard(token)) gone.push_back(token);
        break;
    }
  }
  for (const std::string& token : gone) {
    auto it = jobs_.find(token);
    if (it->second->mark_thread.joinable()) it->second->mark_thread.join();
    cluster_.endStandIn(token);
    jobs_.erase(it);
  }
  arm();
}

}  // namespace petrel
