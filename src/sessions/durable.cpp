// Durable sessions on the persistent store (persistence/): loading at
// start-up, writing session state as it changes, the RAM window of durable
// queues (refill from disk, eviction of offline sessions), and holding
// acknowledgements until the batch that stores their message has committed.
//
// Ordering argument: batches commit in ticket order, and a client's output
// is released only when the ticket of its last handler has committed, so
// when a PUBACK goes out every write that the PUBLISH caused (queue entries,
// the message record, the retained slot) is on disk.
#include "mqtt/encoder.h"
#include "mqtt/topic.h"
#include "src/broker/broker.h"
#include "src/util/log.h"

namespace petrel {

namespace {

persistence::WillRecord willRecord(const mqtt::Will& w, mqtt::Version v) {
  persistence::WillRecord r;
  r.topic = w.topic;
  r.payload = w.payload;
  r.qos = w.qos;
  r.retain = w.retain;
  if (v == mqtt::Version::V5 && !w.props.empty()) mqtt::encodeProperties(w.props, r.props);
  return r;
}

bool decodeProps(const std::string& block, mqtt::PropertyContext ctx, mqtt::Properties& out) {
  if (block.empty()) return true;
  size_t pos = 0;
  return mqtt::decodeProperties(reinterpret_cast<const uint8_t*>(block.data()), block.size(), pos,
                                ctx, out) == mqtt::Reason::Success;
}

}  // namespace

bool Broker::attachStore(std::unique_ptr<persistence::Store> store, std::string& err) {
  store_ = std::move(store);
  uv_async_init(loop_, &commit_async_, &Broker::onCommitAsync);
  commit_async_.data = this;
  store_->setCommitCallback([this](uint64_t ticket, bool ok) {
    // Writer thread: only atomics and uv_async_send here.
    if (!ok) {
      uint64_t prev = failed_upto_.load();
      while (prev < ticket && !failed_upto_.compare_exchange_weak(prev, ticket)) {
      }
    }
    uv_async_send(&commit_async_);
  });
  return loadStore(err);
}

void Broker::finish() {
  if (!store_) return;
  // Everything submitted is committed and its callback has returned; no
  // more signals can come, so the notifier can close.
  store_->drain();
  store_->setCommitCallback(nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&commit_async_), nullptr);
  uv_run(loop_, UV_RUN_NOWAIT);
}

bool Broker::loadStore(std::string& err) {
  persistence::Store& st = *store_;
  const int64_t now = nowMs();
  next_msg_id_ = st.maxMessageId() + 1;
  size_t n_sessions = 0, n_subs = 0, n_queued = 0;
  std::vector<std::string> expired;
  bool ok = st.forEachSession(
      [&](std::string_view cid, const persistence::SessionRecord& r) {
        auto s = std::make_unique<Session>(std::string(cid));
        s->version = static_cast<mqtt::Version>(r.version);
        s->expiry_interval = r.expiry_interval;
        s->stored = true;
        s->evicted = true;
        s->username = r.username;
        // A session that was connected when the broker stopped starts its
        // expiry now; one that was offline keeps its wall-clock deadline.
        s->expires_at_ms = r.expires_at_ms;
        if (!s->expires_at_ms && s->expiry_interval != 0xFFFFFFFF)
          s->expires_at_ms = now + int64_t(s->expiry_interval) * 1000;
        if (r.will) {
          mqtt::Will w;
          w.topic = r.will->topic;
          w.payload = r.will->payload;
          w.qos = r.will->qos;
          w.retain = r.will->retain;
          decodeProps(r.will->props, mqtt::PropertyContext::Will, w.props);
          s->will = std::make_unique<mqtt::Will>(std::move(w));
          // The connection of a will without a deadline ended when the
          // broker stopped: an abnormal end, so its will is due (after its
          // delay, counted from now).
          s->will_at_ms = r.will_at_ms ? r.will_at_ms
                                       : now + int64_t(s->will->props.will_delay_interval.value_or(0)) * 1000;
        }
        const auto qi = st.queueInfo(cid);
        s->disk_count = qi.count;
        s->next_read_seq = qi.first_seq;
        s->next_seq = qi.last_seq + 1;
        s->queued_bytes = qi.bytes;
        n_queued += qi.count;
        if (s->expires_at_ms && s->expires_at_ms <= now) expired.push_back(s->clientId());
        sessions_.emplace(s->clientId(), std::move(s));
        ++n_sessions;
      },
      err);
  if (!ok) return false;
  ok = st.forEachSubscription(
      [&](std::string_view cid, const persistence::SubscriptionRecord& r) {
        auto it = sessions_.find(std::string(cid));
        if (it == sessions_.end()) return;  // orphan: ignored
        Session& s = *it->second;
        SubscriptionOptions o;
        o.qos = r.qos;
        o.no_local = r.no_local;
        o.retain_as_published = r.retain_as_published;
        o.retain_handling = r.retain_handling;
        o.subscription_id = r.subscription_id;
        tree_.subscribe(r.filter, r.group, &s, o);
        s.subscriptions.set(r.key, o);
        if (!r.group.empty()) s.has_shared = true;
        ++n_subs;
      },
      err);
  if (!ok) return false;
  ok = st.forEachInboundQos2(
      [&](std::string_view cid, uint16_t pid) {
        auto it = sessions_.find(std::string(cid));
        if (it != sessions_.end()) it->second->inbound_qos2.insert(pid);
      },
      err);
  if (!ok) return false;
  std::vector<std::pair<std::string, uint64_t>> retained;
  ok = st.forEachRetained([&](std::string_view t, uint64_t id) { retained.emplace_back(t, id); }, err);
  if (!ok) return false;
  size_t n_retained = 0;
  for (auto& [topic, id] : retained) {
    MessagePtr m = loadMessage(id);
    if (!m || (m->expires_at_ms && m->expires_at_ms <= now)) {
      store_->batch().setRetained(topic, 0);  // expired while we were down
      continue;
    }
    retained_.set(m);
    ++n_retained;
  }
  loadGroupQueues();
  returnGroupMessagesAfterRestart();
  LOG_NOTICE("persistence: loaded %zu sessions, %zu subscriptions, %zu queued messages, %zu retained",
             n_sessions, n_subs, n_queued, n_retained);
  // Sessions that expired while the broker was down end now (their wills
  // go out first); wills whose delay passed are published.
  for (const auto& id : expired) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) continue;
    LOG_INFO("session %s expired while the broker was stopped", id.c_str());
    endSession(it->second.get());
  }
  for (auto& [id, s] : sessions_)
    if (s->will && s->will_at_ms <= now) publishWill(*s);
  // What start-up rewrote (hand-backs, expiries) is committed before the
  // first client can read its queue.
  store_->drain();
  return true;
}

void Broker::saveSession(Session& s) {
  if (!store_) return;
  persistence::SessionRecord r;
  r.version = static_cast<uint8_t>(s.version);
  r.expiry_interval = s.expiry_interval;
  r.expires_at_ms = s.conn ? 0 : s.expires_at_ms;
  r.will_at_ms = s.will_at_ms;
  if (s.will) r.will = willRecord(*s.will, s.version);
  r.username = s.username;
  store_->batch().putSession(s.clientId(), r);
  s.stored = true;
}

void Broker::saveSubscription(Session& s, std::string_view key, const SubscriptionOptions& o) {
  persistence::SubscriptionRecord r;
  mqtt::SharedFilter sf;
  mqtt::parseSharedFilter(key, sf);
  r.key = std::string(key);
  r.group = std::string(sf.group);
  r.filter = std::string(sf.shared ? sf.filter : key);
  r.qos = o.qos;
  r.no_local = o.no_local;
  r.retain_as_published = o.retain_as_published;
  r.retain_handling = o.retain_handling;
  r.subscription_id = o.subscription_id;
  store_->batch().putSubscription(s.clientId(), r);
}

void Broker::saveQueueEntry(Session& s, const Delivery& d, uint16_t pid, bool released) {
  persistence::QueueRecord q;
  q.seq = d.seq;
  q.msg_id = d.msg->id;
  q.qos = d.qos;
  q.retain = d.retain;
  q.released = released;
  q.packet_id = pid;
  q.bytes = static_cast<uint32_t>(d.msg->payload.size());
  q.subscription_ids = d.subscription_ids;
  if (d.group) q.group = d.group->owner();
  store_->batch().putQueue(s.clientId(), q);
}

bool Broker::storeFull() {
  const bool full = store_->usedBytes() > store_->mapSize() / 10 * 9;
  if (full && !store_full_logged_) {
    store_full_logged_ = true;
    LOG_ERROR("persistence: the store is 90%% full (persistence.max_size_mb = %llu); "
              "new messages for durable queues are dropped",
              static_cast<unsigned long long>(store_->mapSize() >> 20));
  } else if (!full) {
    store_full_logged_ = false;
  }
  return full;
}

MessagePtr Broker::loadMessage(uint64_t id) {
  auto it = msg_cache_.find(id);
  if (it != msg_cache_.end()) {
    if (MessagePtr m = it->second.lock()) return m;
  }
  persistence::MessageRecord r;
  if (!store_->readMessage(id, r)) return nullptr;
  auto m = std::make_shared<Message>();
  m->topic = std::move(r.topic);
  m->payload = std::move(r.payload);
  m->origin = std::move(r.origin);
  m->qos = r.qos;
  m->retain = r.retain;
  m->expires_at_ms = r.expires_at_ms;
  m->id = id;
  decodeProps(r.props, mqtt::PropertyContext::Publish, m->props);
  m->has_props = !m->props.empty();
  MessagePtr p = std::move(m);
  msg_cache_[id] = p;
  return p;
}

void Broker::refill(Session& s, bool resend) {
  if (!store_ || s.disk_count == 0) return;
  const size_t want = kRamWindow > s.queue.size() ? kRamWindow - s.queue.size() : 0;
  if (want == 0) return;
  const int64_t now = nowMs();
  Connection* c = s.conn && !s.conn->closing() ? s.conn : nullptr;
  std::vector<persistence::QueueRecord> recs;
  store_->readQueue(s.clientId(), s.next_read_seq, want,
                    [&](const persistence::QueueRecord& q) { recs.push_back(q); });
  for (auto& q : recs) {
    s.next_read_seq = q.seq + 1;
    --s.disk_count;
    Delivery d;
    d.msg = loadMessage(q.msg_id);
    d.qos = q.qos;
    d.retain = q.retain;
    d.subscription_ids = std::move(q.subscription_ids);
    d.seq = q.seq;
    if (!d.msg) {
      LOG_ERROR("persistence: message %llu of client %s is missing from the store; entry dropped",
                static_cast<unsigned long long>(q.msg_id), s.clientId().c_str());
      store_->batch().deleteQueue(s.clientId(), q.seq, q.msg_id);
      continue;
    }
    if (!q.released && d.msg->expires_at_ms && d.msg->expires_at_ms <= now) {
      // [MQTT-3.3.2-5] expired while queued: purged, never delivered.
      forget(s, d);
      continue;
    }
    if (!q.group.empty()) {
      // A group message this member took over (dispatchGroup): it belongs
      // to the group again if the member leaves without completing it.
      d.group = groupByOwner(q.group);
      if (d.group) ++d.group->inflight;
    }
    if (q.packet_id) {
      s.inflight.push_back({q.packet_id, std::move(d), q.released});
      if (resend && c) {
        InflightOut& f = s.inflight.back();
        if (f.released) {
          mqtt::Ack rel;
          rel.type = mqtt::PacketType::Pubrel;
          rel.packet_id = f.packet_id;
          mqtt::encode(rel, c->version, c->out());
        } else {
          sendPublish(s, *c, f.d, f.packet_id, true);
        }
      }
    } else {
      s.queue.push_back(std::move(d));
    }
  }
  s.evicted = false;
  if (s.disk_count > 0 && recs.empty() && !s.refill_waiting) {
    // What is left was written in batches not yet committed: try again when
    // they are.
    s.refill_waiting = true;
    refill_pending_.push_back(&s);
  }
}

void Broker::scheduleEvict(Session& s) {
  s.evict_ticket = store_->ticket();
  evict_pending_.push_back(&s);
}

void Broker::evict(Session& s) {
  if (s.conn || s.evicted) return;
  for (const auto& f : s.inflight)
    if (!f.d.seq) return;  // accepted before the session was durable: keep in RAM
  for (const auto& d : s.queue)
    if (!d.seq) return;
  const size_t n = s.inflight.size() + s.queue.size();
  for (const auto& f : s.inflight)
    if (f.d.group && f.d.group->inflight) --f.d.group->inflight;  // counted again by refill
  if (n) {
    s.next_read_seq = !s.inflight.empty() ? s.inflight.front().d.seq : s.queue.front().seq;
    s.disk_count += n;
    s.inflight.clear();
    s.queue.clear();
  }
  s.evicted = true;
}

void Broker::holdOutput(Connection& c, Connection::OutMark mark, const AckGatePtr& gate) {
  c.holdSince(mark, store_->ticket(), gate);
  if (!c.in_held_list) {
    c.in_held_list = true;
    held_conns_.push_back(&c);
  }
}

void Broker::releaseHeld() {
  const uint64_t done = store_->committed();
  for (size_t i = 0; i < held_conns_.size();) {
    Connection* c = held_conns_[i];
    if (!c->release(done)) {
      c->in_held_list = false;
      held_conns_[i] = held_conns_.back();
      held_conns_.pop_back();
      continue;
    }
    ++i;
  }
}

void Broker::onCommitAsync(uv_async_t* h) { static_cast<Broker*>(h->data)->onCommit(); }

void Broker::onCommit() {
  const uint64_t done = store_->committed();
  const uint64_t failed = failed_upto_.exchange(0);
  if (failed) {
    for (Connection* c : held_conns_) {
      if (!c->holding()) continue;
      // The batch holding these messages was not stored: the client must
      // not see their acknowledgements. Closing makes it send them again.
      LOG_ERROR("persistence: a commit failed; closing %s so that it resends", c->peer().c_str());
      c->dropHeld();
      c->closeAfterFlush();
    }
  }
  releaseHeld();
  for (size_t i = 0; i < evict_pending_.size();) {
    Session* s = evict_pending_[i];
    if (s->evict_ticket <= done) {
      if (!s->conn) evict(*s);
      evict_pending_[i] = evict_pending_.back();
      evict_pending_.pop_back();
      continue;
    }
    ++i;
  }
  if (!refill_pending_.empty()) {
    std::vector<Session*> waiting;
    waiting.swap(refill_pending_);
    for (Session* s : waiting) {
      s->refill_waiting = false;
      if (s->conn) pump(*s);
    }
  }
  if (!group_refill_pending_.empty()) {
    std::vector<SharedGroup*> waiting;
    waiting.swap(group_refill_pending_);
    for (SharedGroup* g : waiting) {
      if (!g) continue;
      g->refill_waiting = false;
      dispatchGroup(*g);
    }
  }
  // Messages loaded from disk and no longer used by any session.
  if (msg_cache_.size() > 4 * kRamWindow) {
    for (auto it = msg_cache_.begin(); it != msg_cache_.end();)
      it = it->second.expired() ? msg_cache_.erase(it) : std::next(it);
  }
  flushAll();
}

void Broker::forgetSession(Session* s) {
  auto drop = [s](std::vector<Session*>& v) {
    for (size_t i = 0; i < v.size();) {
      if (v[i] == s) {
        v[i] = v.back();
        v.pop_back();
      } else {
        ++i;
      }
    }
  };
  drop(evict_pending_);
  drop(refill_pending_);
}

}  // namespace petrel
