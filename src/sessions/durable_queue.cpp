// The durable state of sessions (persistence/ through Durable): the
// session, subscription and queue records, and the RAM window of a durable
// queue -- entries beyond kRamWindow, and every entry of an offline session
// once its writes have committed, live only in the store and are read back
// as the window drains.
#include "src/durable/durable.h"
#include "src/durable/records.h"
#include "src/queues/shared_groups.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"
#include "src/util/log.h"

namespace petrel {

void Sessions::save(Session& s) {
  if (!durable_.enabled()) return;
  persistence::SessionRecord r;
  r.version = static_cast<uint8_t>(s.version);
  r.expiry_interval = s.expiry_interval;
  r.expires_at_ms = s.conn ? 0 : s.expires_at_ms;
  r.will_at_ms = s.will_at_ms;
  if (s.will) r.will = willRecord(*s.will, s.version);
  r.username = s.username;
  durable_.batch().putSession(s.clientId(), r);
  s.stored = true;
}

void Sessions::saveSubscription(Session& s, std::string_view key, const SubscriptionOptions& o) {
  durable_.batch().putSubscription(s.clientId(), subscriptionRecord(key, o));
}

void Sessions::saveQueueEntry(Session& s, const Delivery& d, uint16_t pid, bool released) {
  durable_.batch().putQueue(s.clientId(), queueRecord(d, pid, released));
}

void Sessions::refill(Session& s, bool resend) {
  if (!durable_.enabled() || s.disk_count == 0) return;
  const size_t want = kRamWindow > s.queue.size() ? kRamWindow - s.queue.size() : 0;
  if (want == 0) return;
  const int64_t now = clock_.wallMs();
  Connection* c = s.conn && !s.conn->closing() ? s.conn : nullptr;
  // The window's buffers are kept from one refill to the next (a nested
  // refill, if any, gets empty ones).
  std::vector<persistence::QueueRecord> recs = std::move(refill_recs_);
  std::vector<uint64_t> ids = std::move(refill_ids_);
  recs.clear();
  ids.clear();
  recs.reserve(want);
  durable_.store().readQueue(s.clientId(), s.next_read_seq, want,
                    [&](persistence::QueueRecord& q) { recs.push_back(std::move(q)); });
  // The window's messages in one read transaction, not one each.
  ids.reserve(recs.size());
  for (const auto& q : recs) ids.push_back(q.msg_id);
  std::vector<MessagePtr> msgs = durable_.loadMessages(ids);
  for (size_t i = 0; i < recs.size(); ++i) {
    auto& q = recs[i];
    s.next_read_seq = q.seq + 1;
    --s.disk_count;
    Delivery d;
    d.msg = std::move(msgs[i]);
    d.qos = q.qos;
    d.retain = q.retain;
    d.subscription_ids = std::move(q.subscription_ids);
    d.seq = q.seq;
    if (!d.msg) {
      LOG_ERROR("persistence: message %llu of client %s is missing from the store; entry dropped",
                static_cast<unsigned long long>(q.msg_id), s.clientId().c_str());
      durable_.batch().deleteQueue(s.clientId(), q.seq, q.msg_id);
      continue;
    }
    if (!q.packet_id && d.msg->expires_at_ms && d.msg->expires_at_ms <= now) {
      // [MQTT-3.3.2-5] expired while queued: purged, never delivered. (One
      // in flight is dealt with where it would be sent again.)
      ++stats_.messages_dropped;
      ++stats_.messages_expired;
      forget(s, d);
      continue;
    }
    if (!q.group.empty()) {
      // A group message this member took over (SharedGroups::dispatch): it belongs
      // to the group again if the member leaves without completing it.
      // With its declared queue's entry times, which go back with it.
      d.group_place.set({groups_.byOwner(q.group), 0, q.queued_at_ms, q.deadline_ms});
      if (d.group()) ++d.group()->work->inflight;
    }
    if (q.packet_id) {
      // Sent before (a restart since): sent again, within the client's
      // Receive Maximum and after those waiting already; the rest as the
      // window frees (pump()).
      // One whose id was stored ahead and that was never sent before it was
      // evicted goes as a first send (DUP clear); its id is committed.
      const bool room = s.inflight.unsent() == 0 && s.inflight.onWire() < s.client_receive_max;
      s.inflight.emplace_back(q.packet_id, std::move(d), q.released, false);
      InflightOut& f = s.inflight.back();
      f.fresh = s.fresh_from_seq && q.seq >= s.fresh_from_seq && !q.released;
      if (resend && c && !room) s.inflight.markUnsent(f);
      else if (resend && c && !sendInflight(s, *c, f)) s.inflight.erase(q.packet_id);
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
  refill_recs_ = std::move(recs);
  refill_ids_ = std::move(ids);
}

void Sessions::scheduleEvict(Session& s) {
  s.evict_ticket = durable_.ticket();
  evict_pending_.push_back(&s);
}

void Sessions::evict(Session& s) {
  if (s.conn || s.evicted) return;
  for (const auto& f : s.inflight)
    if (!f.d.seq) return;  // accepted before the session was durable: keep in RAM
  for (const auto& d : s.queue)
    if (!d.seq) return;
  const size_t n = s.inflight.size() + s.queue.size();
  for (const auto& f : s.inflight)
    if (f.d.group() && f.d.group()->work->inflight) --f.d.group()->work->inflight;  // counted again by refill
  // Those never sent, from the first one in RAM, or those of an earlier
  // eviction not read back yet (every entry in RAM comes before them).
  if (s.disk_count == 0 || s.fresh_from_seq < s.next_read_seq) s.fresh_from_seq = 0;
  if (const size_t fresh = s.inflight.neverSent())
    s.fresh_from_seq = (s.inflight.end() - static_cast<std::ptrdiff_t>(fresh))->d.seq;
  if (n) {
    s.next_read_seq = !s.inflight.empty() ? s.inflight.front().d.seq : s.queue.front().seq;
    s.disk_count += n;
    s.inflight.clear();
    s.queue.clear();
  }
  s.evicted = true;
}

void Sessions::afterCommit(uint64_t done) {
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
}


void Sessions::forgetPending(Session* s) {
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
