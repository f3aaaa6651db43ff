#include "src/cluster/group_stream.h"

#include <nats/nats.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>

#include "src/cluster/nats_options.h"
#include "src/util/log.h"

namespace petrel::cluster {

namespace {

constexpr int kWaitMs = 2000;          // for a JetStream answer
constexpr int kRetryMs = 1000;         // between attempts to open a group's consumer
constexpr int kFetchBatch = 256;
constexpr int kFetchWaitMs = 500;      // a fetch with nothing to take returns after this
constexpr int kMaxAckPending = 20000;  // taken by all the nodes together, not yet acknowledged
constexpr int kLeftoverCheckMs = 1000;  // without credit: how often to look for takeLeftovers()

}  // namespace

uint64_t groupId(std::string_view share_name, std::string_view filter) {
  uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 0x100000001b3ULL;
    }
  };
  mix(share_name);
  mix(std::string_view("\0", 1));  // a share name holds no NUL: the split is unambiguous
  mix(filter);
  return h;
}

std::string groupSubject(std::string_view cluster_name, uint64_t gid) {
  char id[24];
  std::snprintf(id, sizeof(id), "%016" PRIx64, gid);
  std::string s(cluster_name);
  s += ".g.";
  s += id;
  return s;
}

std::string groupMsgId(uint64_t node, uint64_t seq, uint64_t gid) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "g%016" PRIx64 ".%" PRIx64 ".%016" PRIx64, node, seq, gid);
  return buf;
}

GroupStream::GroupStream(natsConnection* nc, std::string stream, std::string cluster_name, int64_t ack_wait_ms,
                         std::function<void()> wake)
    : nc_(nc),
      stream_(std::move(stream)),
      cluster_name_(std::move(cluster_name)),
      ack_wait_ms_(ack_wait_ms),
      wake_(std::move(wake)) {}

GroupStream::~GroupStream() { stop(); }

void GroupStream::add(uint64_t gid, const std::string& share_name, const std::string& filter) {
  reap();
  if (stopped_ || groups_.count(gid)) return;
  auto g = std::make_unique<Group>();
  g->gid = gid;
  char id[24];
  std::snprintf(id, sizeof(id), "%016" PRIx64, gid);
  g->durable = "g_" + std::string(id);
  g->subject = groupSubject(cluster_name_, gid);
  g->description = "Petrel: share group $share/" + share_name + "/" + filter;
  Group* raw = g.get();
  groups_.emplace(gid, std::move(g));
  raw->thread = std::thread([this, raw] { run(*raw); });
}

void GroupStream::remove(uint64_t gid) {
  auto it = groups_.find(gid);
  if (it == groups_.end()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    it->second->stopping = true;
  }
  cv_.notify_all();
  retired_.push_back(std::move(it->second));
  groups_.erase(it);
  reap();
}

void GroupStream::reap() {
  for (auto it = retired_.begin(); it != retired_.end();) {
    if (!(*it)->finished.load()) {
      ++it;
      continue;
    }
    (*it)->thread.join();
    it = retired_.erase(it);
  }
}

void GroupStream::setCredit(uint64_t gid, int credit) {
  auto it = groups_.find(gid);
  if (it == groups_.end()) return;
  Group& g = *it->second;
  const int c = credit - g.in_transit.load();
  const int was = g.credit.exchange(c);
  if (was > 0 || c <= 0) return;
  { std::lock_guard<std::mutex> lock(mu_); }  // the thread is waiting, not about to
  cv_.notify_all();
}

void GroupStream::take(std::vector<In>& in) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    in.swap(in_);
  }
  for (const In& i : in) {
    auto it = groups_.find(i.gid);
    if (it != groups_.end()) --it->second->in_transit;
  }
}

void GroupStream::ack(Taken& t) {
  // Buffered by the client (its thread writes it): the loop does not wait.
  natsMsg_Ack(t.msg, nullptr);
  natsMsg_Destroy(t.msg);
  t.msg = nullptr;
  t.sub.reset();  // the last message of a group gone: its subscription closes
}

void GroupStream::nak(Taken& t) {
  natsMsg_Nak(t.msg, nullptr);
  natsMsg_Destroy(t.msg);
  t.msg = nullptr;
  t.sub.reset();
}

void GroupStream::inProgress(const Taken& t) { natsMsg_InProgress(t.msg, nullptr); }

size_t GroupStream::groups() const { return groups_.size(); }

void GroupStream::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& [gid, g] : groups_) g->stopping = true;
  }
  cv_.notify_all();
  for (auto& [gid, g] : groups_) retired_.push_back(std::move(g));
  groups_.clear();
  for (auto& g : retired_)
    if (g->thread.joinable()) g->thread.join();
  retired_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  // Taken and not handed over: JetStream sends them again (to another
  // node) at once.
  for (In& i : in_) nak(i.taken);
  in_.clear();
  if (js_) jsCtx_Destroy(js_);
  js_ = nullptr;
}

void GroupStream::pause(int ms, const Group& g) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(ms), [&g] { return g.stopping.load(); });
}

// The group's consumer (created if missing; one that exists is used as
// it is) and a pull subscription bound to it: every node with members of
// the group reads the same consumer, and JetStream hands each message to
// one of them.
bool GroupStream::open(Group& g, Sub& sub) {
  if (natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) return false;
  natsStatus s = NATS_OK;
  {
    std::lock_guard<std::mutex> lock(js_mu_);
    if (!js_) {
      int st = NATS_OK;
      js_ = jetStreamOf(nc_, kWaitMs, st);
      s = static_cast<natsStatus>(st);
    }
  }
  jsErrCode jerr = static_cast<jsErrCode>(0);
  if (s == NATS_OK) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = g.durable.c_str();
    cc.Description = g.description.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = ack_wait_ms_ * 1000 * 1000;  // nanoseconds
    cc.MaxAckPending = kMaxAckPending;
    cc.FilterSubject = g.subject.c_str();
    jsConsumerInfo* ci = nullptr;
    s = js_AddConsumer(&ci, js_, stream_.c_str(), &cc, nullptr, &jerr);
    if (ci) jsConsumerInfo_Destroy(ci);
    if (s != NATS_OK && !transientNatsError(s)) {
      // Made by another node (perhaps at this moment), or before with
      // another ack wait (group_ack_wait changed): set to this node's
      // settings, the last node to open it wins; one that cannot be is
      // used as it is. A stream that is missing shows below.
      ci = nullptr;
      jsErrCode uerr = static_cast<jsErrCode>(0);
      const natsStatus u = js_UpdateConsumer(&ci, js_, stream_.c_str(), &cc, nullptr, &uerr);
      if (ci) jsConsumerInfo_Destroy(ci);
      if (u != NATS_OK)
        LOG_DEBUG("cluster: share group consumer %s kept as it is: %s (JetStream error %d)", g.durable.c_str(),
                  natsErrorText(u).c_str(), int(uerr));
      s = NATS_OK;
    }
  }
  if (s == NATS_OK) {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream_.c_str();
    so.Consumer = g.durable.c_str();
    jerr = static_cast<jsErrCode>(0);
    natsSubscription* raw = nullptr;
    s = js_PullSubscribe(&raw, js_, g.subject.c_str(), g.durable.c_str(), nullptr, &so, &jerr);
    if (s == NATS_OK) sub = Sub(raw, natsSubscription_Destroy);
  }
  if (s != NATS_OK) {
    // The stream may not exist yet (Stream opens it); run() warns after
    // ten tries.
    LOG_DEBUG("cluster: share group consumer %s of stream %s: %s (JetStream error %d); trying again",
              g.durable.c_str(), stream_.c_str(), natsErrorText(s).c_str(), int(jerr));
    return false;
  }
  return true;
}

// As Stream::runFetch: a fetch that returns at once with what there is
// alternates with one that waits up to kFetchWaitMs for a single message,
// so that a lone message is taken as soon as it comes.
void GroupStream::run(Group& g) {
  Sub sub;
  bool wait = false;
  int failures = 0;
  bool timed_out = false;  // the last fetch gave up waiting before JetStream answered
  while (true) {
    bool credit = false;
    {
      std::unique_lock<std::mutex> lock(mu_);
      credit = cv_.wait_for(lock, std::chrono::milliseconds(kLeftoverCheckMs),
                            [&g] { return g.stopping.load() || g.credit.load() > 0; });
      if (g.stopping) break;
    }
    if (!credit) {
      // The answer to the last fetch is in once something waited.
      if (sub && takeLeftovers(g, sub, false)) timed_out = false;
      continue;
    }
    if (!sub && !open(g, sub)) {
      if (++failures == 10)
        LOG_WARN("cluster: share group consumer %s of stream %s cannot be opened; its messages wait in the stream "
                 "(trying again every %d s)", g.durable.c_str(), stream_.c_str(), kRetryMs / 1000);
      pause(kRetryMs, g);
      continue;
    }
    if (failures >= 10) LOG_NOTICE("cluster: share group consumer %s open", g.durable.c_str());
    failures = 0;
    natsMsgList list{};
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = fetchBatchFor(sub.get(), wait ? 1 : std::max(1, std::min(g.credit.load(), kFetchBatch)));
    const int asked = req.Batch;  // the fetch may lower req.Batch
    req.Expires = int64_t(kFetchWaitMs) * 1000 * 1000;  // nanoseconds
    req.NoWait = !wait;
    const natsStatus s = natsSubscription_FetchRequest(&list, sub.get(), &req);
    timed_out = s == NATS_TIMEOUT;
    if (s == NATS_OK && list.Count > 0) {
      wait = false;  // more may be there: take it at once
    } else if (s == NATS_OK || s == NATS_TIMEOUT || s == NATS_NOT_FOUND) {
      natsMsgList_Destroy(&list);
      wait = !wait;
      continue;
    } else {
      natsMsgList_Destroy(&list);
      if (!transientNatsError(s)) {
        LOG_WARN("cluster: fetching share group consumer %s: %s; opening it again", g.durable.c_str(),
                 natsErrorText(s).c_str());
        sub.reset();  // closes once the loop holds nothing that came by it
      }
      pause(200, g);
      continue;
    }
    handOver(g, sub, list, asked);
  }
  if (sub) {
    // JetStream's answer to a fetch that gave up waiting is on its way
    // (JetStream ends a fetch 10 ms before the client does): a message,
    // or the status that ends the fetch. It is waited for, up to kWaitMs,
    // while the link is up.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kWaitMs);
    int pending = 0;
    int bytes = 0;
    while (timed_out && natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED &&
           natsSubscription_GetPending(sub.get(), &pending, &bytes) == NATS_OK && pending == 0 &&
           std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // The group is gone from this node: what came goes back to JetStream
    // at once, for another node.
    takeLeftovers(g, sub, true);
  }
  // The subscription closes once the loop holds nothing that came by it;
  // the consumer stays: it is the group's.
  sub.reset();
  g.finished = true;
}

void GroupStream::handOver(Group& g, const Sub& sub, natsMsgList& list, int asked) {
  std::vector<In> got;
  keepFetchToBatch(list.Count, asked, "share group consumer", g.durable);
  got.reserve(static_cast<size_t>(list.Count));
  for (int i = 0; i < list.Count; ++i) {
    natsMsg* m = list.Msgs[i];
    list.Msgs[i] = nullptr;
    In in;
    in.gid = g.gid;
    in.body.assign(natsMsg_GetData(m), static_cast<size_t>(natsMsg_GetDataLength(m)));
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta) {
      in.delivered = meta->NumDelivered;
      jsMsgMetaData_Destroy(meta);
    }
    in.taken.msg = m;
    in.taken.sub = sub;
    got.push_back(std::move(in));
  }
  natsMsgList_Destroy(&list);
  if (got.empty()) return;
  g.credit -= static_cast<int>(got.size());
  g.in_transit += static_cast<int>(got.size());
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake = in_.empty();
    for (In& i : got) in_.push_back(std::move(i));
  }
  if (wake) wake_();
}

// A fetch gives up waiting at its deadline; JetStream ends it 10 ms
// earlier, but on a busy machine what it sent in those last moments can
// reach the client after the deadline. Such messages wait in the
// subscription for the next fetch, and are delivered as far as JetStream
// knows: with no next fetch (no credit for a while, or the group gone from
// this node) each would wait out the consumer's ack wait
// (cluster.group_ack_wait, 30 s) before JetStream sent it again, to anyone.
// They are taken now (takeWaiting(): without asking JetStream for more, so
// that nothing comes after the last look), to the loop, or given back to
// JetStream at once when the group's thread ends.
bool GroupStream::takeLeftovers(Group& g, const Sub& sub, bool give_back) {
  int pending = 0;
  int bytes = 0;
  if (natsSubscription_GetPending(sub.get(), &pending, &bytes) != NATS_OK) return false;
  for (int i = 0; i < pending; ++i) {  // each look takes one message or status at least
    natsMsgList list{};
    if (!takeWaiting(sub.get(), list)) break;
    if (!give_back) {
      handOver(g, sub, list, 1);
      continue;
    }
    for (int j = 0; j < list.Count; ++j) {
      Taken t{list.Msgs[j], sub};
      list.Msgs[j] = nullptr;
      nak(t);
      ++returned_;
    }
    natsMsgList_Destroy(&list);
  }
  return pending > 0;
}

}  // namespace petrel::cluster
