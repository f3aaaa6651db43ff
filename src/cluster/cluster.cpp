#include "src/cluster/cluster.h"

#include <nats/nats.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <random>

#include "mqtt/topic.h"
#include "src/cluster/nats_options.h"
#include "src/cluster/subjects.h"
#include "src/cluster/wire.h"
#include "src/durable/durable.h"
#include "src/queues/shared_groups.h"
#include "src/routing/router.h"
#include "src/timers/clock.h"
#include "src/util/log.h"

namespace petrel {

// Messages from the other nodes: each one's subject and body are ranges of
// the batch's bytes. The buffers go back and forth between the client's
// thread and the loop (takeInbox), so a steady stream allocates nothing per
// message on either side.
struct Cluster::InboxBatch {
  struct Item {
    uint32_t subject_off, subject_len;
    uint32_t body_off, body_len;
  };
  std::vector<Item> items;
  std::string bytes;
  void clear() {
    items.clear();
    bytes.clear();
  }
};

// What the client's threads share with the loop. It outlives the Cluster:
// the client may call back until its threads have ended, which is not
// before the process does, so it is kept (reachable) for good once used.
struct Cluster::Inbox {
  using Batch = InboxBatch;
  std::mutex mu;
  uv_async_t* async = nullptr;  // null: the loop takes nothing more
  uint64_t max_bytes = 0;
  Batch batch;
  // Link events for the loop: what to log, and the link's state (1 up, 0
  // down, -1 unchanged; 2 unchanged, but a server's heartbeats were missed:
  // JetStream's watch may have ended).
  std::vector<std::pair<std::string, int>> notes;
  uint64_t dropped = 0;
  std::atomic<bool>* connected = nullptr;

  // Under mu: the loop is told.
  void wake() {
    if (async) uv_async_send(async);
  }
  // `up`: the link's state now (1 up, 0 down, -1 unchanged).
  void note(std::string what, int up) {
    std::lock_guard<std::mutex> lock(mu);
    if (!async) return;
    if (up == 0 || up == 1) connected->store(up == 1);
    notes.emplace_back(std::move(what), up);
    wake();
  }
};

namespace {

void onMessage(natsConnection*, natsSubscription*, natsMsg* msg, void* closure) {
  auto* in = static_cast<Cluster::Inbox*>(closure);
  const char* subject = natsMsg_GetSubject(msg);
  const char* data = natsMsg_GetData(msg);
  const int len = natsMsg_GetDataLength(msg);
  {
    std::lock_guard<std::mutex> lock(in->mu);
    if (in->async) {
      Cluster::Inbox::Batch& b = in->batch;
      const size_t subject_len = strlen(subject);
      // One message always fits: a message larger than the limit is not
      // refused while the loop keeps up.
      if (!b.items.empty() && b.bytes.size() + len + subject_len > in->max_bytes) {
        ++in->dropped;
      } else {
        const auto off = static_cast<uint32_t>(b.bytes.size());
        b.bytes.append(subject, subject_len);
        b.bytes.append(data, static_cast<size_t>(len));
        b.items.push_back({off, static_cast<uint32_t>(subject_len), off + static_cast<uint32_t>(subject_len),
                           static_cast<uint32_t>(len)});
        if (b.items.size() == 1) in->wake();  // the loop has taken the others
      }
    }
  }
  natsMsg_Destroy(msg);
}

std::string lastError(natsStatus s) { return cluster::natsErrorText(s); }

std::string serverOf(natsConnection* nc) {
  char url[256] = {};
  if (nc && natsConnection_GetConnectedUrl(nc, url, sizeof(url)) == NATS_OK && url[0]) return url;
  return "NATS";
}

void onConnected(natsConnection* nc, void* closure) {
  static_cast<Cluster::Inbox*>(closure)->note("cluster: connected to " + serverOf(nc), 1);
}
void onReconnected(natsConnection* nc, void* closure) {
  static_cast<Cluster::Inbox*>(closure)->note("cluster: reconnected to " + serverOf(nc), 1);
}
void onDisconnected(natsConnection*, void* closure) {
  static_cast<Cluster::Inbox*>(closure)->note("cluster: link to NATS lost; reconnecting (what crosses the core way meanwhile is lost)", 0);
}
void onError(natsConnection*, natsSubscription*, natsStatus err, void* closure) {
  // A slow consumer's drops are counted per subscription (counters()).
  static_cast<Cluster::Inbox*>(closure)->note(std::string("cluster: NATS: ") + natsStatus_GetText(err),
                                               err == NATS_MISSED_HEARTBEAT ? 2 : -1);
}

// $SYS is each node's own.
bool isSys(std::string_view topic) {
  return topic.compare(0, 4, "$SYS") == 0 && (topic.size() == 4 || topic[4] == '/');
}

// A node run's id in a stream subject: lower-case hex digits.
bool parseHex(std::string_view s, uint64_t& v) {
  v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else return false;
    v = v << 4 | uint64_t(d);
  }
  return true;
}

// Two retained messages a node need not replace one with the other.
bool sameRetained(const Message& a, const Message& b) {
  if (a.payload != b.payload || a.qos != b.qos || a.expires_at_ms != b.expires_at_ms) return false;
  if (!a.props || !b.props) return !a.props && !b.props;
  return *a.props == *b.props;
}

}  // namespace

Cluster::Cluster(const Parts& p)
    : cfg_(p.cfg), loop_(p.loop), router_(p.router), durable_(p.durable), clock_(p.clock) {
  node_name_ = cluster::nodeName(cfg_);
  cluster::encodeLevel(node_name_, own_token_);
  std::random_device rd;
  node_id_ = (uint64_t(rd()) << 32 | rd()) | 1;  // never 0
}

Cluster::~Cluster() {
  const bool open = async_open_;
  stop();
  // Still open here: the loop is not running (start-up failed), so the
  // close that stop() began completes now.
  if (open) uv_run(loop_, UV_RUN_NOWAIT);
}

void Cluster::attach() {
  if (!enabled()) return;
  router_.setRouteHook([this](const MessagePtr& m) { forward(m); });
  router_.tree().setInterestHook([this](std::string_view filter, bool on) { onInterest(filter, on); });
  if (!cfg_.jetstream) return;
  router_.setRetainHook([this](const MessagePtr& m) { onRetain(m); });
  // Share groups are the cluster's: their messages wait in the groups'
  // stream (group_stream.h).
  router_.setGroupHook([this](SharedGroup& g, const MessagePtr& m) { return toGroup(g, m); });
  SharedGroups::ClusterLink link;
  link.group = [this](SharedGroup& g, bool made) { groupMade(g, made); };
  link.settle = [this](const Message& m, bool done) { settleGroup(m, done); };
  link.room = [this](SharedGroup& g) { groupRoom(g); };
  link.give = [this](SharedGroup& g, const MessagePtr& m, uint64_t seq) { return giveToGroup(g, m, seq); };
  router_.groups().setClusterLink(std::move(link));
}

bool Cluster::start(std::string& err) {
  if (!enabled()) return true;
  inbox_ = std::make_shared<Inbox>();
  work_ = std::make_unique<InboxBatch>();
  cluster::keepForGood(inbox_);
  uv_async_init(loop_, &async_, &Cluster::onAsync);
  async_.data = this;
  async_open_ = true;
  inbox_->async = &async_;
  inbox_->max_bytes = cfg_.max_pending_bytes;
  inbox_->connected = &connected_;
  Inbox* in = inbox_.get();

  const std::string client_name = "petrel " + node_name_;
  natsOptions* opts = cluster::natsOptionsFor(cfg_, client_name, err);
  if (!opts) return false;
  // A node's own messages do not come back to it.
  natsStatus s = natsOptions_SetNoEcho(opts, true);
  // One delivery thread for all subscriptions: arrival in the server's order.
  if (s == NATS_OK) s = natsOptions_UseGlobalMessageDelivery(opts, true);
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(opts, 500);
  if (s == NATS_OK) s = natsOptions_SetRetryOnFailedConnect(opts, true, &onConnected, in);
  if (s == NATS_OK) s = natsOptions_SetReconnectedCB(opts, &onReconnected, in);
  if (s == NATS_OK) s = natsOptions_SetDisconnectedCB(opts, &onDisconnected, in);
  if (s == NATS_OK) s = natsOptions_SetErrorHandler(opts, &onError, in);
  if (s != NATS_OK) {
    err = "cluster: NATS options: " + lastError(s);
    natsOptions_Destroy(opts);
    return false;
  }
  // With retry on a failed connect this returns at once when no server
  // answers, and the client keeps trying in the background.
  s = natsConnection_Connect(&nc_, opts);
  natsOptions_Destroy(opts);
  if (s == NATS_OK) {
    connected_ = true;
    linked_ms_ = clock_.wallMs();
    LOG_NOTICE("cluster '%s': node %s connected to %s", cfg_.name.c_str(), node_name_.c_str(), serverOf(nc_).c_str());
  } else if (s == NATS_NOT_YET_CONNECTED) {
    LOG_WARN("cluster '%s': no NATS server answers yet; node %s keeps trying", cfg_.name.c_str(), node_name_.c_str());
  } else {
    err = "cluster: connecting to NATS: " + lastError(s);
    nc_ = nullptr;
    return false;
  }
  // The other nodes' announcements, then the filters this node already has
  // (loaded from the store).
  control_subject_ = cluster::controlSubject(cfg_.name);
  s = natsConnection_Subscribe(&control_sub_, nc_, control_subject_.c_str(), &onMessage, in);
  if (s != NATS_OK) {
    err = "cluster: subscribing to " + control_subject_ + ": " + lastError(s);
    return false;
  }
  for (auto& [filter, i] : interest_) subscribe(filter, i);
  if (cfg_.jetstream) {
    move_subject_ = cluster::moveSubject(cfg_.name, own_token_);
    s = natsConnection_Subscribe(&move_sub_, nc_, move_subject_.c_str(), &onMessage, in);
    if (s != NATS_OK) {
      err = "cluster: subscribing to " + move_subject_ + ": " + lastError(s);
      return false;
    }
    // A move request nothing listened to: NATS answers "no responders"
    // on its reply subject, "<move subject>.n.<the move's number>".
    unanswered_prefix_ = move_subject_ + ".n.";
    const std::string unanswered = unanswered_prefix_ + "*";
    s = natsConnection_Subscribe(&unanswered_sub_, nc_, unanswered.c_str(), &onMessage, in);
    if (s != NATS_OK) {
      err = "cluster: subscribing to " + unanswered + ": " + lastError(s);
      return false;
    }
    auto wake = [in] {
      std::lock_guard<std::mutex> lock(in->mu);
      in->wake();
    };
    bucket_ = std::make_unique<cluster::Bucket>(nc_, cfg_.name + "_retained", "retained messages",
                                                "Petrel: the retained message of each topic", cfg_.replicas,
                                                cfg_.max_pending_bytes, wake);
    registry_ = std::make_unique<cluster::Bucket>(nc_, cfg_.name + "_sessions", "session registry",
                                                  "Petrel: the node each client id last connected to",
                                                  cfg_.replicas, cfg_.max_pending_bytes, wake);
    bucket_->start();
    registry_->start();
    stream_ = std::make_unique<cluster::Stream>(nc_, cfg_.name + "_messages", cfg_.name + ".q.", own_token_, cfg_.replicas,
                                                cfg_.max_pending_bytes, wake);
    stream_->alsoOpen(cfg_.name + "_groups", cfg_.name + ".g.>", "Petrel: the messages of share groups");
    stream_->start();
    groups_js_ = std::make_unique<cluster::GroupStream>(nc_, cfg_.name + "_groups", cfg_.name,
                                                        int64_t{cfg_.group_ack_wait_s} * 1000, wake);
    for (auto& [gid, g] : local_groups_) {
      groups_js_->add(gid, g->name, g->filter);
      groups_js_->setCredit(gid, router_.groups().room(*g));
    }
    if (durable_.enabled() && cfg_.store_replica) {
      // The node's store, kept in JetStream too (store_replica.h).
      replica_ = std::make_unique<cluster::StoreReplicaStream>(
          nc_, cfg_.name + "_replica", cfg_.name + ".r.>", cfg_.name + ".r." + own_token_ + ".", cfg_.replicas,
          durable_.store(), durable_.ticket() - 1, replica_guard_, [this] { durable_.replicaMoved(); });
      durable_.setReplica(replica_.get());
      replica_->start();
    }
    uv_timer_init(loop_, &group_progress_);
    group_progress_.data = this;
    group_progress_open_ = true;
    // Three times within the ack wait: a renewal that comes late still
    // comes in time.
    const uint64_t progress_ms = uint64_t{cfg_.group_ack_wait_s} * 1000 / 3;
    uv_timer_start(&group_progress_, &Cluster::onGroupProgress, progress_ms, progress_ms);
    uv_unref(reinterpret_cast<uv_handle_t*>(&group_progress_));
  }
  // The status first: it names this node, which the others need before
  // they send it QoS 1 and 2 messages through the stream.
  if (connected_) {
    sendStatus();
    announceAll();
    announce(cluster::ControlKind::Hello);
  }
  uv_timer_init(loop_, &control_wait_);
  control_wait_.data = this;
  control_wait_open_ = true;
  uv_timer_init(loop_, &refresh_);
  refresh_.data = this;
  refresh_open_ = true;
  uv_timer_start(&refresh_, &Cluster::onRefresh, kRefreshMs, kRefreshMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&refresh_));
  uv_timer_init(loop_, &status_timer_);
  status_timer_.data = this;
  status_open_ = true;
  uv_timer_start(&status_timer_, &Cluster::onStatusTimer, kStatusMs, kStatusMs);
  uv_unref(reinterpret_cast<uv_handle_t*>(&status_timer_));
  return true;
}

void Cluster::onStatusTimer(uv_timer_t* t) {
  auto* c = static_cast<Cluster*>(t->data);
  c->sendStatus();
  const int64_t gone_before = c->clock_.wallMs() - int64_t(kGoneMs);
  for (auto it = c->peers_.begin(); it != c->peers_.end();) {
    if (it->second.heard_ms < gone_before) it = c->peers_.erase(it);
    else ++it;
  }
}

cluster::NodeStatus Cluster::ownStatus() const {
  cluster::NodeStatus st;
  if (local_counts_) {
    const LocalCounts lc = local_counts_();
    st.clients = lc.clients;
    st.sessions = lc.sessions;
  }
  st.filters = interest_.size();
  st.sent = counters_.sent;
  st.received = counters_.received;
  // $SYS values are each node's own, in memory.
  st.retained = router_.retained().size() - router_.retained().countWithPrefix("$SYS/");
  st.name = node_name_;
  return st;
}

void Cluster::sendStatus() {
  cluster::encodeStatus(ownStatus(), status_rest_);
  announce(cluster::ControlKind::Status, status_rest_);
}

std::vector<Cluster::NodeView> Cluster::nodes() const {
  std::vector<NodeView> out;
  if (!enabled()) return out;
  out.push_back({ownStatus(), true, 0});
  const int64_t now = clock_.wallMs();
  for (const auto& [id, p] : peers_)
    out.push_back({p.status, false, static_cast<uint64_t>(std::max<int64_t>(0, now - p.heard_ms))});
  std::sort(out.begin() + 1, out.end(),
            [](const NodeView& a, const NodeView& b) { return a.status.name < b.status.name; });
  return out;
}

void Cluster::onRefresh(uv_timer_t* t) {
  auto* c = static_cast<Cluster*>(t->data);
  c->announceAll();
  c->remote_.expire(c->clock_.wallMs() - int64_t(c->stream_ && c->stream_->opened() ? kAwayKeepMs : kForgetMs));
  for (auto it = c->names_.begin(); it != c->names_.end();) {
    if (!c->remote_.knows(it->first) && !c->peers_.count(it->first)) it = c->names_.erase(it);
    else ++it;
  }
  for (auto it = c->last_control_.begin(); it != c->last_control_.end();) {
    if (!c->names_.count(it->first) && !c->peers_.count(it->first)) it = c->last_control_.erase(it);
    else ++it;
  }
}

void Cluster::forgetOlder(uint64_t node) {
  auto self = names_.find(node);
  if (self == names_.end()) return;
  for (auto it = names_.begin(); it != names_.end();) {
    if (it->first != node && it->second == self->second) {
      remote_.forget(it->first);
      peers_.erase(it->first);
      it = names_.erase(it);
    } else {
      ++it;
    }
  }
}

void Cluster::announce(cluster::ControlKind kind, std::string_view filter) {
  if (!nc_ || stopped_) return;
  cluster::encodeControl(kind, node_id_, gen_, filter, control_body_, ++control_index_);
  // Refused only while the client's buffer is full (reconnecting): the
  // full announcement after the reconnect makes up for it.
  natsConnection_Publish(nc_, control_subject_.c_str(), control_body_.data(), static_cast<int>(control_body_.size()));
}

void Cluster::announceAll() {
  ++gen_;
  announcing_all_ = interest_.size() > kAnnounceMax;
  if (announcing_all_) {
    announce(cluster::ControlKind::All);
  } else {
    for (const auto& [filter, i] : interest_) announce(cluster::ControlKind::Add, filter);
  }
  announce(cluster::ControlKind::End);
}

void Cluster::control(const uint8_t* data, size_t len, int64_t now_ms) {
  cluster::Control c;
  if (!cluster::decodeControl(data, len, c)) {
    ++counters_.dropped;
    LOG_WARN("cluster: a control message no Petrel node sends; dropped");
    return;
  }
  if (c.node == node_id_) return;
  uint64_t& last = last_control_[c.node];
  if (c.index > last) last = c.index;
  switch (c.kind) {
    case cluster::ControlKind::Add:
      remote_.add(c.node, c.gen, c.filter, now_ms);
      gained_interest_ = true;
      break;
    case cluster::ControlKind::Remove: remote_.remove(c.node, c.filter, now_ms); break;
    case cluster::ControlKind::All:
      remote_.all(c.node, c.gen, now_ms);
      gained_interest_ = true;
      break;
    case cluster::ControlKind::End:
      remote_.end(c.node, c.gen, now_ms);
      forgetOlder(c.node);
      break;
    case cluster::ControlKind::Hello:  // a node (re)joined: it learns this one's status and filters
      sendStatus();
      announceAll();
      break;
    case cluster::ControlKind::Status: {
      Peer& p = peers_[c.node];
      if (!cluster::decodeStatus(c.filter, p.status)) {
        peers_.erase(c.node);
        ++counters_.dropped;
        LOG_WARN("cluster: a node status no Petrel node sends; dropped");
        return;
      }
      p.heard_ms = now_ms;
      std::string& name = names_[c.node];
      name.clear();
      cluster::encodeLevel(p.status.name, name);
      break;
    }
    case cluster::ControlKind::Query: sendStatus(); break;  // petrel inspect --cluster asks
    case cluster::ControlKind::Adopted:  // a node that is down: its sessions are served by the sender
      forgetNode(c.filter);
      break;
    case cluster::ControlKind::Bye:  // stopping: it leaves the list
      // Without the stream its filters go now. With it they stay (for
      // kAwayKeepMs): what its durable sessions are owed waits in the
      // stream until it is back.
      if (!stream_ || !stream_->opened()) remote_.forget(c.node);
      peers_.erase(c.node);
      if (auto n = names_.find(c.node); n != names_.end()) byes_[n->second] = now_ms;
      break;
  }
}

void Cluster::stop() {
  if (stopped_ || !inbox_) return;
  stopped_ = true;
  {
    std::lock_guard<std::mutex> lock(inbox_->mu);
    inbox_->async = nullptr;
    inbox_->batch.clear();
  }
  // Its last puts go out before the link closes.
  if (bucket_) bucket_->stop();
  if (registry_) registry_->stop();
  // Share group messages held here go back to the groups' stream for the
  // other nodes at once (a member that had one may see it again: QoS 1).
  if (groups_js_) {
    for (auto& [token, t] : held_) groups_js_->nak(t);
    counters_.group_returned += held_.size();
    held_.clear();
    groups_js_->stop();
  }
  if (group_progress_open_) {
    group_progress_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&group_progress_), nullptr);
  }
  // Copies taken and not stored yet come again to this node's next run.
  if (stream_) {
    flushStream();  // what this turn gathered (a will at shutdown)
    for (const Unacked& u : unacked_) u.from->release(u.msg);
    unacked_.clear();
    for (WaitingIn& w : waiting_in_) stream_->release(w.in.msg);
    waiting_in_.clear();
    stream_->stop();
    for (auto& [token, st] : stand_ins_) st.stream->stop();
    stand_ins_.clear();
  }
  // What the store wrote last is in the replica before the link closes.
  if (replica_) {
    replica_->stop();
    durable_.setReplica(nullptr);
  }
  // The others forget this node's filters now, not in kForgetMs.
  if (nc_) {
    cluster::encodeControl(cluster::ControlKind::Bye, node_id_, gen_, {}, control_body_, ++control_index_);
    natsConnection_Publish(nc_, control_subject_.c_str(), control_body_.data(), static_cast<int>(control_body_.size()));
  }
  if (status_open_) {
    status_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&status_timer_), nullptr);
  }
  if (control_wait_open_) {
    control_wait_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&control_wait_), nullptr);
  }
  if (refresh_open_) {
    refresh_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&refresh_), nullptr);
  }
  if (nc_) {
    // Flushes what was published, then closes; no callback reaches the
    // loop after the lock above.
    natsConnection_FlushTimeout(nc_, 1000);
    if (control_sub_) natsSubscription_Destroy(control_sub_);
    control_sub_ = nullptr;
    if (move_sub_) natsSubscription_Destroy(move_sub_);
    move_sub_ = nullptr;
    if (unanswered_sub_) natsSubscription_Destroy(unanswered_sub_);
    unanswered_sub_ = nullptr;
    for (auto& [filter, i] : interest_) {
      for (natsSubscription* sub : i.subs) natsSubscription_Destroy(sub);
      i.subs.clear();
    }
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
    nc_ = nullptr;
  }
  connected_ = false;
  if (async_open_) {
    async_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr);
  }
}

void Cluster::subscribe(const std::string& filter, Interest& i) {
  for (const std::string& subject : cluster::filterSubjects(cfg_.name, filter)) {
    natsSubscription* sub = nullptr;
    const natsStatus s = natsConnection_Subscribe(&sub, nc_, subject.c_str(), &onMessage, inbox_.get());
    if (s != NATS_OK) {
      LOG_ERROR("cluster: subscribing to %s (filter '%s'): %s", subject.c_str(), filter.c_str(), lastError(s).c_str());
      continue;
    }
    i.subs.push_back(sub);
  }
}

void Cluster::onInterest(std::string_view filter, bool on) {
  if (stopped_) return;
  if (on) {
    auto [it, added] = interest_.try_emplace(std::string(filter));
    if (!added) return;
    if (nc_) subscribe(it->first, it->second);
    if (announcing_all_) return;
    if (interest_.size() > kAnnounceMax) {
      announceAll();  // "every message" from now on
    } else {
      announce(cluster::ControlKind::Add, filter);
    }
    return;
  }
  auto it = interest_.find(std::string(filter));
  if (it == interest_.end()) return;
  for (natsSubscription* sub : it->second.subs) {
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
  }
  interest_.erase(it);
  if (!announcing_all_) {
    announce(cluster::ControlKind::Remove, filter);
  } else if (interest_.size() < kAnnounceMax / 2) {
    announceAll();  // the filters again, one by one
  }
}

void Cluster::forward(const MessagePtr& m) {
  if (!nc_ || stopped_ || m->from_cluster || isSys(m->topic)) return;
  if (!remote_.wants(m->topic)) {
    ++counters_.kept;  // no other node has a filter that matches
    return;
  }
  // Through the stream once it has opened, and while it opens again (a
  // fetch refused by a consumer changing leader, say): the core way does
  // not store, and a node that is away would never get the copy its
  // durable sessions are owed, though the publisher had its PUBACK.
  if (m->qos > 0 && stream_ && stream_->opened() && forwardStored(*m)) return;
  subject_ = cluster::topicSubject(cfg_.name, m->topic);
  cluster::encodeWire(*m, node_id_, ++seq_, body_);
  stamp(*m, seq_);
  const natsStatus s = natsConnection_Publish(nc_, subject_.c_str(), body_.data(), static_cast<int>(body_.size()));
  if (s == NATS_OK) {
    ++counters_.sent;
  } else {
    ++counters_.send_failed;
    LOG_DEBUG("cluster: publish to %s failed: %s", subject_.c_str(), natsStatus_GetText(s));
  }
}

// A message of this node's that goes to others carries its identity here
// as well (Message::cluster_node): set on the loop while it is routed,
// before any session holds it.
void Cluster::stamp(const Message& m, uint64_t seq) {
  auto& w = const_cast<Message&>(m);
  w.cluster_node = node_id_;
  w.cluster_seq = seq;
}

bool Cluster::forwardStored(const Message& m) {
  // The nodes that want it, by name (a node that restarted may be known
  // under its old id as well, until its new one has announced its filters).
  dests_.clear();
  bool unnamed = false;
  remote_.forEachWanting(m.topic, [&](uint64_t id) {
    auto it = names_.find(id);
    if (it == names_.end()) {
      unnamed = true;
      return;
    }
    // One copy per node. Addressed to the run of the node that wants it:
    // its current one when that wants it too, else an earlier one (the
    // node is down or restarting; only its durable sessions are owed it).
    for (Dest& d : dests_) {
      if (*d.name != it->second) continue;
      auto now = peers_.find(id);
      auto was = peers_.find(d.id);
      if (now != peers_.end() && (was == peers_.end() || now->second.heard_ms > was->second.heard_ms)) d.id = id;
      return;
    }
    dests_.push_back({&it->second, id});
  });
  if (unnamed) {
    if (counters_.unnamed++ == 0)
      LOG_NOTICE("cluster: a node wants a QoS 1 or 2 message before it has said its name; such messages go to it at "
                 "most once (counted: stream/unnamed)");
    return false;
  }
  if (dests_.empty()) return false;
  if (waiting_copies_ > kStreamWaitingMax) {
    if (counters_.stream_overflow++ == 0)
      LOG_WARN("cluster: more than %zu messages for other nodes wait for the stream; QoS 1 and 2 messages go to "
               "them at most once until it catches up (counted: stream_overflow)", kStreamWaitingMax);
    return false;
  }
  cluster::encodeWire(m, node_id_, ++seq_, body_);
  stamp(m, seq_);
  char id[24];
  for (const Dest& d : dests_) {
    // Into the batch for that node's run, which goes to the stream at the
    // end of this loop turn (flushStream()) or once it is large.
    std::snprintf(id, sizeof(id), "%016llx", static_cast<unsigned long long>(d.id));
    subject_ = stream_->nodePrefix(*d.name) + id;
    OutBatch& b = batches_[subject_];
    if (!b.body.empty() && b.body.size() + body_.size() + m.topic.size() > kBatchBytes) sendBatch(subject_, b);
    cluster::appendBatchEntry(m.topic, body_, b.body);
    ++b.copies;
    ++waiting_copies_;
    if (collecting_) {
      if (!*collecting_) *collecting_ = std::make_shared<AckGate>();
      (*collecting_)->addReceiver();
      b.gates.push_back(*collecting_);
    }
  }
  ++counters_.sent;
  return true;
}

void Cluster::sendBatch(const std::string& subject, OutBatch& b) {
  cluster::Stream::Out o;
  // The number of this node's last control message so far: the receiving
  // node takes the copies once it has that one (waitsForControl()).
  char index[24];
  std::snprintf(index, sizeof(index), ".%llx", static_cast<unsigned long long>(control_index_));
  o.subject = subject + index;
  o.body.swap(b.body);
  o.token = ++next_token_;
  Awaiting a;
  a.gates = std::move(b.gates);
  a.copies = b.copies;
  awaiting_.emplace(o.token, std::move(a));
  b.gates.clear();
  b.copies = 0;
  stream_->publish(std::move(o));
}

void Cluster::sendBatches() {
  for (auto& [subject, b] : batches_)
    if (!b.body.empty()) sendBatch(subject, b);
  batches_.clear();
}

// What the stream has for this node, and which copies for other nodes it
// has stored.
void Cluster::takeStream(int64_t now_ms) {
  stream_->take(stream_in_, stream_done_);
  bool opened = false;
  bool gave = false;
  for (const cluster::Stream::Done& d : stream_done_) {
    auto it = awaiting_.find(d.token);
    if (it == awaiting_.end()) continue;
    const uint32_t copies = it->second.copies;
    waiting_copies_ -= std::min<uint64_t>(waiting_copies_, copies);
    // Refused for good (too large for NATS): logged and counted; the
    // PUBACK goes, as it would for a message no node wants.
    if (it->second.group && d.stored) counters_.group_stored += copies;
    else (d.stored ? counters_.stream_stored : counters_.stream_failed) += copies;
    if (Awaiting& a = it->second; a.given) {
      // A message a group here gave to the cluster: its store entry goes
      // now; refused, it is queued here again (too large for NATS: for
      // the group's members here only).
      gave = true;
      if (!d.stored) {
        router_.groups().putBack(a.owner, a.given, a.given_seq, d.too_large);
      } else {
        ++counters_.group_returned;
        if (a.given_seq && durable_.enabled()) durable_.batch().deleteQueue(a.owner, a.given_seq, a.given->id);
      }
    }
    for (const AckGatePtr& g : it->second.gates)
      if (g->receiverDone()) opened = true;
    awaiting_.erase(it);
  }
  stream_done_.clear();
  // The stream has what groups here gave: the next round of what they
  // hold (kGiveMax at a time) goes.
  if (gave) router_.groups().handBackAll();
  if (opened) {
    if (on_stored_) on_stored_();
    ackRouted();
  }
  // In the order they came; one from a node whose control messages sent
  // before it (a new subscription's announcement, say) have not arrived
  // here yet waits for them, up to kControlWaitMs: the two come through
  // different threads of the NATS client. So a request through the
  // stream finds the requester's reply subscription known here.
  for (cluster::Stream::In& in : stream_in_) waiting_in_.push_back({std::move(in), now_ms});
  stream_in_.clear();
  while (!waiting_in_.empty()) {
    WaitingIn& w = waiting_in_.front();
    if (now_ms - w.since_ms < int64_t(kControlWaitMs) && waitsForControl(w.in)) {
      if (!uv_is_active(reinterpret_cast<uv_handle_t*>(&control_wait_)))
        uv_timer_start(&control_wait_, &Cluster::onControlWait, 10, 0);
      break;
    }
    routeStream(*stream_, w.in, now_ms);
    waiting_in_.pop_front();
  }
}

// "<name>.q.<node>.<run id>.<control index>" of this node: the run and
// the sender's control index (absent: 0), both lower-case hex.
bool Cluster::parseStreamSubject(const cluster::Stream& from, std::string_view subject, uint64_t& to,
                                 uint64_t& index) const {
  const std::string& own = from.ownPrefix();
  index = 0;
  if (subject.size() < own.size() + 16 || subject.compare(0, own.size(), own) != 0) return false;
  std::string_view rest = subject.substr(own.size());
  if (!parseHex(rest.substr(0, 16), to)) return false;
  if (rest.size() == 16) return true;
  rest.remove_prefix(16);
  return rest.size() >= 2 && rest.size() <= 17 && rest[0] == '.' && parseHex(rest.substr(1), index);
}

bool Cluster::waitsForControl(const cluster::Stream::In& in) const {
  uint64_t to = 0, index = 0;
  if (!parseStreamSubject(*stream_, in.subject, to, index) || index == 0) return false;
  size_t pos = 0;
  std::string_view topic, body;
  bool bad = false;
  uint64_t sender = 0;
  if (!cluster::nextBatchEntry(in.body, pos, topic, body, bad) || !cluster::wireNode(body, sender)) return false;
  auto it = last_control_.find(sender);
  return it == last_control_.end() || it->second < index;
}

void Cluster::onControlWait(uv_timer_t* t) { static_cast<Cluster*>(t->data)->takeInbox(); }

void Cluster::routeStream(cluster::Stream& from, cluster::Stream::In& in, int64_t now_ms, uint32_t adopted) {
  // "<name>.q.<node>.<run id>.<control index>": the run of this node it
  // was sent to.
  uint64_t to = 0, index = 0;
  if (!parseStreamSubject(from, in.subject, to, index)) {
    ++counters_.dropped;
    LOG_WARN("cluster: a message on %s in stream %s is not one a Petrel node sends; dropped", in.subject.c_str(),
             (cfg_.name + "_messages").c_str());
    from.ack(in.msg);  // it would only come again
    return;
  }
  // A copy that comes again: taken by this node before it was killed or
  // restarted (routed now), or its acknowledgement was lost (routed
  // again: at least once), or it still waits for this node's commit (the
  // first one is acknowledged then).
  if (in.delivered > 1) {
    const bool waiting = std::any_of(unacked_.begin(), unacked_.end(),
                                     [&](const Unacked& u) { return u.seq == in.stream_seq; });
    if (waiting) {
      ++counters_.duplicates;
      from.release(in.msg);
      return;
    }
  }
  const bool durable = durable_.enabled();
  const size_t ops = durable ? durable_.batch().count() : 0;
  // A share group's copy its routing sends to the groups' stream must be
  // stored there before this copy is acknowledged.
  AckGatePtr gate;
  AckGatePtr* const was_collecting = collecting_;
  collecting_ = &gate;
  size_t pos = 0;
  std::string_view entry_topic, entry_body;
  bool bad = false;
  while (cluster::nextBatchEntry(in.body, pos, entry_topic, entry_body, bad)) {
    auto msg = makeMessage();
    cluster::WireInfo info;
    if (!mqtt::validTopicName(entry_topic) ||
        !cluster::decodeWire(reinterpret_cast<const uint8_t*>(entry_body.data()), entry_body.size(), *msg, info)) {
      bad = true;
      continue;
    }
    ++counters_.received;
    ++counters_.stream_taken;
    if (msg->expires_at_ms && msg->expires_at_ms <= now_ms) continue;  // ran out on the way
    msg->topic.assign(entry_topic);
    msg->from_cluster = true;
    // Sent to an earlier run of this node: owed to the durable sessions
    // that were here then, not to clean ones made since.
    msg->durable_only = adopted || to != node_id_;
    // Sent to a node that is down, whose sessions this node took: owed to
    // those sessions alone.
    msg->adopted_from = adopted;
    msg->cluster_node = info.node;
    msg->cluster_seq = info.seq;
    msg->id = durable_.newMessageId();
    router_.route(MessagePtr(std::move(msg)));
  }
  if (bad) {
    ++counters_.dropped;
    LOG_WARN("cluster: an entry of a message on %s in stream %s is not one a Petrel node sends; dropped",
             in.subject.c_str(), (cfg_.name + "_messages").c_str());
  }
  collecting_ = was_collecting;
  // Stored by this node (a durable session's queue): acknowledged to the
  // stream once that has committed (and the groups' copies are stored).
  // Otherwise delivered or dropped as a message published here would be:
  // acknowledged now.
  const bool wrote = durable && durable_.batch().count() != ops;
  if (wrote || (gate && !gate->open())) {
    unacked_.push_back({wrote ? durable_.awaitedTicket() : 0, in.stream_seq, in.msg, std::move(gate), &from});
  } else {
    from.ack(in.msg);
  }
}

void Cluster::afterCommit(uint64_t committed, bool failed) {
  committed_ = std::max(committed_, committed);
  if (unacked_.empty()) return;
  if (failed) {
    // Not stored: the stream sends them again (after its ack wait).
    size_t n = 0;
    for (; n < unacked_.size() && unacked_[n].ticket <= committed; ++n) unacked_[n].from->release(unacked_[n].msg);
    unacked_.erase(unacked_.begin(), unacked_.begin() + static_cast<std::ptrdiff_t>(n));
    return;
  }
  ackRouted();
}

void Cluster::ackRouted() {
  auto done = [this](const Unacked& u) {
    if (u.ticket > committed_ || (u.gate && !u.gate->open())) return false;
    u.from->ack(u.msg);
    return true;
  };
  unacked_.erase(std::remove_if(unacked_.begin(), unacked_.end(), done), unacked_.end());
}

bool Cluster::toGroup(SharedGroup& g, const MessagePtr& mp) {
  // $SYS is each node's own. While the streams cannot be reached (NATS
  // down, JetStream off on the servers) the group is this node's, as it
  // would be without a cluster: its members here get what is routed here.
  if (stopped_ || !stream_ || !stream_->ready() || isSys(mp->topic)) return false;
  // No other node has a filter that matches: no group elsewhere can want
  // the message, and this node's group queues it as a node alone would
  // (without a round trip through JetStream). Another node that joins the
  // group meanwhile may make a copy too before this node hears of it: a
  // message can then reach two members (at least once).
  if (!remote_.wants(mp->topic)) return false;
  const Message& m = *mp;
  if (!SharedGroups::accepts(g, m)) return true;  // left out, as it would be here
  // Every node with the group that routes the message publishes the
  // group's copy under the same id (the message's cluster identity):
  // JetStream keeps one.
  if (!m.cluster_node) stamp(m, ++seq_);
  const uint64_t gid = cluster::groupId(g.name, g.filter);
  Awaiting a;
  // The publisher's PUBACK (or the acknowledgement of the copy this came
  // in) waits until the groups' stream has it.
  if (collecting_ && m.qos > 0) {
    if (!*collecting_) *collecting_ = std::make_shared<AckGate>();
    (*collecting_)->addReceiver();
    a.gates.push_back(*collecting_);
  }
  publishGroupCopy(g, m, cluster::groupMsgId(m.cluster_node, m.cluster_seq, gid), std::move(a));
  return true;
}

bool Cluster::giveToGroup(SharedGroup& g, const MessagePtr& m, uint64_t seq) {
  if (stopped_ || !stream_ || !stream_->ready() || isSys(m->topic) || !remote_.wants(m->topic)) return false;
  if (waiting_copies_ > kStreamWaitingMax) return false;  // the next round
  Awaiting a;
  a.given = m;
  a.owner = g.owner();
  a.given_seq = seq;
  // An id of this run's own (Stream's): the group's copy made when the
  // message was routed here did not exist (no other node wanted it then).
  publishGroupCopy(g, *m, {}, std::move(a));
  return true;
}

void Cluster::publishGroupCopy(SharedGroup& g, const Message& m, std::string msg_id, Awaiting a) {
  const uint64_t gid = cluster::groupId(g.name, g.filter);
  cluster::encodeWire(m, m.cluster_node, m.cluster_seq, wire_);
  group_body_.clear();
  cluster::appendBatchEntry(m.topic, wire_, group_body_);
  cluster::Stream::Out o;
  o.subject = cluster::groupSubject(cfg_.name, gid);
  o.body = group_body_;
  o.token = ++next_token_;
  o.msg_id = std::move(msg_id);
  a.copies = 1;
  a.group = true;
  awaiting_.emplace(o.token, std::move(a));
  ++waiting_copies_;
  stream_->publish(std::move(o));
}

void Cluster::takeGroups(int64_t now_ms) {
  groups_js_->take(group_in_);
  for (cluster::GroupStream::In& in : group_in_) {
    auto it = local_groups_.find(in.gid);
    size_t pos = 0;
    std::string_view topic, body;
    bool bad = false;
    auto msg = makeMessage();
    cluster::WireInfo info;
    if (!cluster::nextBatchEntry(in.body, pos, topic, body, bad) || !mqtt::validTopicName(topic) ||
        !cluster::decodeWire(reinterpret_cast<const uint8_t*>(body.data()), body.size(), *msg, info)) {
      ++counters_.dropped;
      LOG_WARN("cluster: a message in stream %s is not one a Petrel node sends; dropped",
               (cfg_.name + "_groups").c_str());
      groups_js_->ack(in.taken);  // it would only come again
      continue;
    }
    if (it == local_groups_.end()) {
      // The group left this node meanwhile: for another node.
      ++counters_.group_returned;
      groups_js_->nak(in.taken);
      continue;
    }
    if (msg->expires_at_ms && msg->expires_at_ms <= now_ms) {
      groups_js_->ack(in.taken);  // ran out while it waited
      continue;
    }
    msg->topic.assign(topic);
    msg->from_cluster = true;
    msg->cluster_node = info.node;
    msg->cluster_seq = info.seq;
    msg->id = durable_.newMessageId();
    msg->group_token = ++next_group_token_;
    held_.emplace(msg->group_token, std::move(in.taken));
    ++counters_.group_taken;
    router_.groups().enqueueTaken(*it->second, MessagePtr(std::move(msg)), in.delivered > 1);
  }
  group_in_.clear();
}

void Cluster::groupMade(SharedGroup& g, bool made) {
  const uint64_t gid = cluster::groupId(g.name, g.filter);
  if (made) {
    local_groups_[gid] = &g;
    if (groups_js_) groups_js_->add(gid, g.name, g.filter);
  } else {
    local_groups_.erase(gid);
    if (groups_js_) groups_js_->remove(gid);
  }
}

void Cluster::settleGroup(const Message& m, bool done) {
  auto it = held_.find(m.group_token);
  if (it == held_.end() || !groups_js_) return;
  if (done) {
    groups_js_->ack(it->second);
  } else {
    groups_js_->nak(it->second);
    ++counters_.group_returned;
  }
  held_.erase(it);
}

void Cluster::groupRoom(SharedGroup& g) {
  if (groups_js_) groups_js_->setCredit(cluster::groupId(g.name, g.filter), router_.groups().room(g));
}

// What a member holds a while (a slow consumer) is kept from the
// consumer's ack wait: it is not sent to another node meanwhile.
void Cluster::onGroupProgress(uv_timer_t* t) {
  auto* c = static_cast<Cluster*>(t->data);
  if (!c->groups_js_) return;
  for (const auto& [token, t] : c->held_) c->groups_js_->inProgress(t);
  // Members' room also changes without a dispatch (a member that went
  // away): the credit is set again.
  for (auto& [gid, g] : c->local_groups_) c->groupRoom(*g);
  // What groups queued here as their own, with no member online here,
  // goes to members elsewhere (once another node wants it).
  c->router_.groups().handBackAll();
}

void Cluster::onAsync(uv_async_t* h) { static_cast<Cluster*>(h->data)->takeInbox(); }

void Cluster::takeInbox() {
  // work_ was emptied after the last turn: it goes to the client's thread
  // with its capacity, and what that thread gathered comes here.
  std::vector<std::pair<std::string, int>> notes;
  {
    std::lock_guard<std::mutex> lock(inbox_->mu);
    std::swap(work_->items, inbox_->batch.items);
    std::swap(work_->bytes, inbox_->batch.bytes);
    notes.swap(inbox_->notes);
  }
  for (const auto& [text, up] : notes) {
    LOG_NOTICE("%s", text.c_str());
    // (Re)linked: the other nodes learn this one's filters, and it theirs.
    if (up == 1) {
      linked_ms_ = clock_.wallMs();
      sendStatus();
      announceAll();
      announce(cluster::ControlKind::Hello);
    }
    // JetStream's watch of the retained messages starts again, with the
    // bucket's values: while the link was down (or a server went), the
    // server it was reading from may have ended it.
    if ((up == 1 || up == 2) && bucket_) {
      bucket_->rewatch();
      registry_->rewatch();
    }
  }
  const uint64_t now = static_cast<uint64_t>(clock_.wallMs());
  if (bucket_) {
    bucket_->take(bucket_events_);
    for (auto& e : bucket_events_) bucketEvent(e, int64_t(now));
    bucket_events_.clear();
    registry_->take(bucket_events_);
    for (const auto& e : bucket_events_) registryEvent(e);
    bucket_events_.clear();
  }
  std::string topic;
  const std::string& bytes = work_->bytes;
  for (const InboxBatch::Item& item : work_->items) {
    const std::string_view subject(bytes.data() + item.subject_off, item.subject_len);
    if (subject == control_subject_) {
      control(reinterpret_cast<const uint8_t*>(bytes.data()) + item.body_off, item.body_len, int64_t(now));
      continue;
    }
    if (!move_subject_.empty() && subject == move_subject_) {
      if (on_move_) on_move_(std::string_view(bytes.data() + item.body_off, item.body_len));
      continue;
    }
    if (!unanswered_prefix_.empty() && subject.size() > unanswered_prefix_.size() &&
        subject.compare(0, unanswered_prefix_.size(), unanswered_prefix_) == 0) {
      uint64_t move = 0;
      if (parseHex(subject.substr(unanswered_prefix_.size()), move) && on_unanswered_) on_unanswered_(move);
      continue;
    }
    auto msg = makeMessage();
    cluster::WireInfo info;
    if (!cluster::subjectTopic(cfg_.name, subject, topic) || !mqtt::validTopicName(topic) ||
        !cluster::decodeWire(reinterpret_cast<const uint8_t*>(bytes.data()) + item.body_off, item.body_len, *msg,
                             info)) {
      ++counters_.dropped;
      LOG_WARN("cluster: a message on %.*s is not one a Petrel node sends; dropped", int(subject.size()),
               subject.data());
      continue;
    }
    // Several of this node's subscriptions may match one message: it is
    // taken once. A node's messages arrive in the order it sent them.
    Seen& seen = seen_[info.node];
    seen.at_ms = now;
    if (info.seq <= seen.seq) {
      ++counters_.duplicates;
      continue;
    }
    seen.seq = info.seq;
    ++counters_.received;
    if (msg->expires_at_ms && msg->expires_at_ms <= int64_t(now)) continue;  // ran out on the way
    msg->topic = std::move(topic);
    topic.clear();
    msg->from_cluster = true;
    msg->cluster_node = info.node;
    msg->cluster_seq = info.seq;
    msg->id = durable_.newMessageId();
    router_.route(MessagePtr(std::move(msg)));
  }
  work_->clear();
  // The stream's after the core messages: an announcement (a node's new
  // subscription to a reply topic) that came before a request through the
  // stream is known when the request is routed.
  if (stream_) {
    stream_settled_seen_ = stream_->settledMarks();
    takeStream(int64_t(now));
  }
  for (auto& [token, st] : stand_ins_) {
    st.stream->take(stand_in_in_, stream_done_);
    stream_done_.clear();  // it publishes nothing
    for (cluster::Stream::In& in : stand_in_in_) routeStream(*st.stream, in, int64_t(now), st.tag);
    stand_in_in_.clear();
  }
  if (groups_js_) takeGroups(int64_t(now));
  // Another node gained a filter: what groups here queued as their own,
  // with no member online here, may go to members there.
  // At most once a second: every group with messages and no member here
  // is looked at.
  if (gained_interest_ && groups_js_ && now >= last_hand_back_ms_ + 1000) {
    last_hand_back_ms_ = now;
    gained_interest_ = false;
    router_.groups().handBackAll();
  }
  // After a burst: do not keep its peak for ever.
  if (work_->bytes.capacity() > cfg_.max_pending_bytes / 4) std::string().swap(work_->bytes);
  // Nodes that restarted (a new id each time) are forgotten after a while.
  constexpr uint64_t kForgetMs = 10 * 60 * 1000;
  if (seen_.size() > 64) {
    for (auto it = seen_.begin(); it != seen_.end();) {
      if (now - it->second.at_ms > kForgetMs) it = seen_.erase(it);
      else ++it;
    }
  }
}

void Cluster::onRetain(const MessagePtr& m) {
  if (!bucket_ || stopped_ || isSys(m->topic)) return;
  putRetained(*m);
}

void Cluster::putRetained(const Message& m, bool only_new) {
  const uint64_t seq = ++seq_;
  cluster::encodeWire(m, node_id_, seq, retained_body_);
  own_pending_[m.topic] = seq;
  bucket_->put(cluster::topicKey(m.topic), retained_body_, only_new);
}

// The bucket's order is the cluster's: every node applies the entries of a
// topic in that order, so all end with the bucket's last. This node's own
// entry coming back is skipped when its store still has it (nothing else
// came between); when another node's entry came between, the bucket has
// this one after it, so it is applied again.
void Cluster::bucketEvent(cluster::Bucket::Event& e, int64_t now_ms) {
  using Event = cluster::Bucket::Event;
  if (e.kind == Event::SyncStart) {
    syncing_ = true;
    synced_.clear();
    return;
  }
  if (e.kind == Event::SyncEnd) return endSync(now_ms);
  std::string topic;
  if (!cluster::keyTopic(e.key, topic) || !mqtt::validTopicName(topic) || isSys(topic)) {
    ++counters_.dropped;
    LOG_WARN("cluster: key %s in bucket %s is not one a Petrel node puts; ignored", e.key.c_str(),
             bucket_->name().c_str());
    return;
  }
  if (syncing_) synced_.insert(topic);
  auto msg = makeMessage();
  if (e.kind == Event::Put) {
    cluster::WireInfo info;
    if (!cluster::decodeWire(reinterpret_cast<const uint8_t*>(e.value.data()), e.value.size(), *msg, info)) {
      ++counters_.dropped;
      LOG_WARN("cluster: the value of key %s in bucket %s is not one a Petrel node puts; ignored", e.key.c_str(),
               bucket_->name().c_str());
      return;
    }
    auto own = own_pending_.find(topic);
    if (info.node == node_id_ && own != own_pending_.end()) {
      if (info.seq < own->second) return;  // a later one of this node's follows
      own_pending_.erase(own);
      return;  // the store has it
    }
    if (own != own_pending_.end()) own_pending_.erase(own);  // another node's came first; this node's follows
    if (info.node != node_id_) ++counters_.retained_taken;
  }
  // Deleted or purged in the bucket (by hand: nodes put an empty payload),
  // cleared, or run out: no retained message.
  msg->topic = std::move(topic);
  msg->retain = true;
  msg->from_cluster = true;
  const bool clear = e.kind == Event::Delete || msg->payload.empty() || (msg->expires_at_ms && msg->expires_at_ms <= now_ms);
  const MessagePtr* have = router_.retained().find(msg->topic);
  if (clear) {
    if (!have) return;
    msg->payload.clear();
  } else {
    if (have && sameRetained(**have, *msg)) return;  // a node rejoining: its store has it
    msg->id = durable_.newMessageId();
  }
  MessagePtr m = std::move(msg);
  const uint32_t refs = router_.retain(m);
  if (refs && durable_.enabled()) durable_.putMessage(*m, refs);
}

// The bucket's values are all here. A retained message this node has and
// the bucket never had (published while the node was cut off from NATS, or
// before it joined the cluster) goes to the bucket now. A topic cleared
// while the node was away is in the bucket (an empty payload), so it was
// cleared here above. The client's end of the first values is not always
// the true end (it can come early while other nodes put), so these puts
// are only for keys the bucket holds nothing for: a value it holds that
// the watch had not brought yet stays, and comes afterwards.
void Cluster::endSync(int64_t now_ms) {
  syncing_ = false;
  std::vector<MessagePtr> missing;
  router_.retained().forEach([&](const MessagePtr& m) {
    if (isSys(m->topic) || synced_.count(m->topic) || own_pending_.count(m->topic)) return;
    if (m->expires_at_ms && m->expires_at_ms <= now_ms) return;
    missing.push_back(m);
  });
  decltype(synced_)().swap(synced_);
  for (const MessagePtr& m : missing) putRetained(*m, true);
  if (!missing.empty())
    LOG_NOTICE("cluster: %zu retained messages of this node put in bucket %s, where it holds none for their topics",
               missing.size(), bucket_->name().c_str());
}

void Cluster::clientConnected(const std::string& client_id) {
  if (!registry_ || stopped_) return;
  // The node's name goes with it, for the log of the node that closes
  // its connection.
  const uint64_t seq = ++seq_;
  cluster::encodeRegistration(node_id_, seq, node_name_, registry_body_);
  registered_[client_id] = {seq, false};
  std::string key;
  cluster::encodeLevel(client_id, key);
  registry_->put(key, registry_body_);
  // Clients long gone are forgotten now and then (the map holds the ones
  // that connected here since).
  if (connected_here_ && registered_.size() > 4096 &&
      registered_.size() > 2 * (local_counts_ ? local_counts_().clients : 0)) {
    for (auto it = registered_.begin(); it != registered_.end();) {
      if (it->second.echoed && it->first != client_id && !connected_here_(it->first)) it = registered_.erase(it);
      else ++it;
    }
  }
}

// The bucket's order decides which connection of a client stays: a node's
// registration seen before another node's is older, and its connection
// closes; one not seen yet is newer (the other node closes its own when it
// sees this one).
void Cluster::registryEvent(const cluster::Bucket::Event& e) {
  using Event = cluster::Bucket::Event;
  cluster::Registration reg;
  std::string client_id;
  if (e.kind != Event::Put || !cluster::decodeRegistration(e.value, reg) || !cluster::decodeLevel(e.key, client_id))
    return;
  if (reg.node == node_id_) {
    owners_.erase(client_id);
  } else {
    Owner& o = owners_[client_id];
    o.node = reg.node;
    o.name.assign(reg.name);
    o.token.clear();
    cluster::encodeLevel(o.name, o.token);
  }
  auto it = registered_.find(client_id);
  if (it == registered_.end()) return;
  if (reg.node == node_id_) {
    if (reg.seq == it->second.seq) it->second.echoed = true;
    return;
  }
  if (!it->second.echoed) return;  // this node's registration comes after: the other closes
  registered_.erase(it);
  if (!connected_here_ || !connected_here_(client_id)) return;
  ++counters_.taken_over;
  take_over_(client_id, std::string(reg.name));
}

const Cluster::Owner* Cluster::ownerElsewhere(const std::string& client_id) const {
  // By name: a node that restarted since the registration (a new id) is
  // asked as well; an earlier run of this node is not another node.
  auto it = owners_.find(client_id);
  if (it == owners_.end() || it->second.token == own_token_ || !nodeUp(it->second.token)) return nullptr;
  return &it->second;
}

const std::string* Cluster::registeredToken(const std::string& client_id) const {
  if (auto it = owners_.find(client_id); it != owners_.end()) return &it->second.token;
  // This node's own registration: owners_ holds other nodes' only.
  if (registered_.count(client_id)) return &own_token_;
  return nullptr;
}

bool Cluster::nodeUp(std::string_view token) const {
  for (const auto& [id, p] : peers_) {
    auto n = names_.find(id);
    if (n != names_.end() && n->second == token) return true;
  }
  return false;
}

bool Cluster::sendMoveRequest(std::string_view token, const std::string& body, uint64_t move) {
  if (!nc_ || stopped_ || unanswered_prefix_.empty()) return false;
  const std::string subject = cluster::moveSubject(cfg_.name, token);
  char hex[17];
  snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(move));
  const std::string reply = unanswered_prefix_ + hex;
  return natsConnection_PublishRequest(nc_, subject.c_str(), reply.c_str(), body.data(),
                                       static_cast<int>(body.size())) == NATS_OK;
}

void Cluster::unanswered(const std::string& token) { unanswered_[token] = clock_.wallMs(); }

int64_t Cluster::lastHeard(std::string_view token) const {
  int64_t heard = -1;
  for (const auto& [id, p] : peers_) {
    auto n = names_.find(id);
    if (n != names_.end() && n->second == token) heard = std::max(heard, p.heard_ms);
  }
  return heard;
}

bool Cluster::nodeDown(std::string_view token) const {
  if (token == own_token_) return false;
  const int64_t heard = lastHeard(token);
  const int64_t now = clock_.wallMs();
  if (heard < 0) {
    // Not up. This node has been linked long enough to have heard its
    // status; and one that said bye is given a moment to start again.
    if (!linked_ms_ || now - linked_ms_ <= int64_t(kStatusMs + kDownSlackMs)) return false;
    auto bye = byes_.find(std::string(token));
    return bye == byes_.end() || now - bye->second > int64_t(kByeGraceMs);
  }
  auto it = unanswered_.find(std::string(token));
  return it != unanswered_.end() && it->second >= heard &&
         clock_.wallMs() - heard > int64_t(kStatusMs + kDownSlackMs);
}

bool Cluster::nodeQuiet(std::string_view token) const {
  const int64_t heard = lastHeard(token);
  if (heard < 0) return nodeDown(token);
  return clock_.wallMs() - heard > int64_t(kStatusMs + kDownSlackMs);
}

std::string Cluster::adopterFor(std::string_view token) const {
  std::string best = own_token_;
  for (const auto& [id, p] : peers_) {
    auto n = names_.find(id);
    if (n == names_.end() || n->second == token || nodeDown(n->second)) continue;
    if (n->second < best) best = n->second;
  }
  return best;
}

bool Cluster::standIn(const std::string& token, uint32_t tag) {
  if (!nc_ || stopped_ || !stream_) return false;
  if (stand_ins_.count(token)) return true;
  auto in = inbox_;
  auto wake = [in] {
    std::lock_guard<std::mutex> lock(in->mu);
    in->wake();
  };
  StandIn& st = stand_ins_[token];
  st.tag = tag;
  st.stream = std::make_unique<cluster::Stream>(nc_, cfg_.name + "_messages", cfg_.name + ".q.", token, cfg_.replicas,
                                                cfg_.max_pending_bytes, wake);
  st.stream->watchSettled(true);
  st.stream->renewConsumer();
  st.stream->start();
  return true;
}

bool Cluster::standInReady(const std::string& token) const {
  auto it = stand_ins_.find(token);
  return it != stand_ins_.end() && it->second.stream->ready();
}

uint64_t Cluster::standInSettled(const std::string& token) const {
  auto it = stand_ins_.find(token);
  return it == stand_ins_.end() ? 0 : it->second.stream->settledMarks();
}

void Cluster::endStandIn(const std::string& token) {
  auto it = stand_ins_.find(token);
  if (it == stand_ins_.end()) return;
  cluster::Stream* st = it->second.stream.get();
  // What it took and has not stored comes again to that node's consumer.
  for (size_t i = 0; i < unacked_.size();) {
    if (unacked_[i].from != st) {
      ++i;
      continue;
    }
    st->release(unacked_[i].msg);
    unacked_.erase(unacked_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  st->stop();
  stand_ins_.erase(it);
}

void Cluster::sendAdopted(const std::string& token) {
  forgetNode(token);
  announce(cluster::ControlKind::Adopted, token);
}

void Cluster::forgetNode(std::string_view token) {
  for (const auto& [id, name] : names_)
    if (name == token) remote_.forget(id);
}

bool Cluster::sendMove(std::string_view token, const std::string& body) {
  if (!nc_ || stopped_) return false;
  const std::string subject = cluster::moveSubject(cfg_.name, token);
  return natsConnection_Publish(nc_, subject.c_str(), body.data(), static_cast<int>(body.size())) == NATS_OK;
}

void Cluster::publishSys() {
  if (!enabled()) return;
  const Counters c = counters();
  auto put = [&](const char* what, std::string value) {
    auto m = makeMessage();
    m->topic = std::string("$SYS/broker/cluster/") + what;
    m->payload = std::move(value);
    m->retain = true;
    m->id = durable_.newMessageId();
    MessagePtr msg = std::move(m);
    router_.retainInMemory(msg);  // like every $SYS value: not stored
    router_.route(msg);
  };
  put("state", connected() ? "1" : "0");
  put("node", node_name_);
  put("sent", std::to_string(c.sent));
  put("received", std::to_string(c.received));
  put("duplicates", std::to_string(c.duplicates));
  put("dropped", std::to_string(c.dropped));
  put("send_failed", std::to_string(c.send_failed));
  put("kept", std::to_string(c.kept));
  put("nodes", std::to_string(1 + peers_.size()));
  if (bucket_) {
    put("retained/bucket", c.retained_watching ? "1" : "0");
    put("retained/put", std::to_string(c.retained_put));
    put("retained/taken", std::to_string(c.retained_taken));
    put("retained/failed", std::to_string(c.retained_failed));
    put("sessions/bucket", c.sessions_watching ? "1" : "0");
    put("taken_over", std::to_string(c.taken_over));
    put("stream/up", c.stream_ready ? "1" : "0");
    put("stream/stored", std::to_string(c.stream_stored));
    put("stream/failed", std::to_string(c.stream_failed));
    put("stream/taken", std::to_string(c.stream_taken));
    put("stream/waiting", std::to_string(c.stream_waiting));
    put("stream/overflow", std::to_string(c.stream_overflow));
    put("stream/unnamed", std::to_string(c.unnamed));
    put("stream/retried", std::to_string(c.stream_retried));
    put("moves/in", std::to_string(c.moved_in));
    put("moves/out", std::to_string(c.moved_out));
    put("moves/messages_in", std::to_string(c.moved_messages_in));
    put("moves/messages_out", std::to_string(c.moved_messages_out));
    put("moves/failed", std::to_string(c.move_failed));
    put("adopted/nodes", std::to_string(c.adopted_nodes));
    put("adopted/sessions", std::to_string(c.adopted_sessions));
    put("adopted/messages", std::to_string(c.adopted_messages));
    put("adopted/failed", std::to_string(c.adopt_failed));
    put("groups/count", std::to_string(c.groups));
    put("groups/stored", std::to_string(c.group_stored));
    put("groups/taken", std::to_string(c.group_taken));
    put("groups/returned", std::to_string(c.group_returned));
    put("groups/held", std::to_string(c.group_held));
    if (c.replica) {
      put("replica/live", c.replica_live ? "1" : "0");
      put("replica/snapshots", std::to_string(c.replica_snapshots));
      put("replica/bytes", std::to_string(c.replica_bytes));
      put("replica/records", std::to_string(c.replica_records));
      put("replica/stalls", std::to_string(c.replica_stalls));
    }
  }
}

Cluster::Counters Cluster::counters() const {
  Counters c = counters_;
  if (bucket_) {
    const cluster::Bucket::Counters b = bucket_->counters();
    c.retained_put = b.put;
    c.retained_failed = b.put_failed;
    c.retained_watching = b.watching;
  }
  if (registry_) c.sessions_watching = registry_->counters().watching;
  if (stream_) {
    const cluster::Stream::Counters s = stream_->counters();
    c.stream_ready = s.ready;
    c.stream_waiting = waiting_copies_;
    c.stream_retried = s.retried;
  }
  if (move_counters_) move_counters_(c);
  if (replica_) {
    const cluster::StoreReplicaStream::Counters r = replica_->counters();
    c.replica = true;
    c.replica_live = r.live;
    c.replica_snapshots = r.snapshots;
    c.replica_bytes = r.snapshot_bytes + r.log_bytes;
    c.replica_records = r.records;
    c.replica_stalls = r.stalls;
  }
  c.groups = local_groups_.size();
  c.group_held = held_.size();
  if (groups_js_) c.group_returned += groups_js_->returned();
  if (inbox_) {
    std::lock_guard<std::mutex> lock(inbox_->mu);
    c.dropped += inbox_->dropped;
  }
  for (const auto& [filter, i] : interest_) {
    for (natsSubscription* sub : i.subs) {
      int64_t n = 0;
      if (natsSubscription_GetDropped(sub, &n) == NATS_OK) c.dropped += static_cast<uint64_t>(n);
    }
  }
  return c;
}

}  // namespace petrel
