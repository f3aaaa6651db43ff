// Delivery to a session: a message is sent at once when the client is
// online with room in its window (Receive Maximum) and its output below the
// high-water mark; otherwise it waits in the session queue (QoS 1/2) or is
// dropped (QoS 0, sent now or never). Acknowledgements free the window and
// pull the next queued messages.
#include <algorithm>
#include <optional>
#include <vector>

#include "mqtt/encoder.h"
#include "src/acks/ack_holds.h"
#include "src/bridges/bridge.h"
#include "src/durable/durable.h"
#include "src/queues/shared_groups.h"
#include "src/sessions/output_budget.h"
#include "src/sessions/sessions.h"
#include "src/timers/clock.h"
#include "src/transport/io_workers.h"
#include "src/util/log.h"

namespace petrel {

DeliverOutcome Sessions::deliver(Session& s, Delivery&& d, const AckGatePtr& gate) {
  Connection* c = s.conn;
  const bool online = c && !c->closing() && c->connected;
  uint64_t max_messages = cfg_.max_queued_messages;
  uint64_t max_bytes = cfg_.max_queued_bytes;
  if (s.bridge) {
    if (auto it = own_limits_.find(&s); it != own_limits_.end()) {
      max_messages = it->second.max_messages;
      max_bytes = it->second.max_bytes;
      if (d.qos == 0 && it->second.qos0) d.qos = 1;  // kept for the link like QoS 1
    }
  }
  if (d.qos == 0) {
    // QoS 0 is sent now or never: not queued for offline sessions, and
    // dropped for a client whose socket cannot keep up.
    if (!online) return DeliverOutcome::NotStored;
    if (c->pendingOutput() >= Connection::kOutputHighWater && !budget_.qos0Allowed(s, *c))
      return DeliverOutcome::NotStored;
    sendPublish(s, *c, d, 0, false);
    return DeliverOutcome::NotStored;
  }
  const bool persist = durable(s) && s.stored;
  const size_t bytes = d.msg->payload.size();
  auto queueLimit = [&]() -> const char* {
    if (max_messages && s.queuedCount() >= max_messages)
      return s.bridge ? "queue.max_messages" : "limits.max_queued_messages";
    if (max_bytes && s.queued_bytes + bytes > max_bytes)
      return s.bridge ? "queue.max_bytes" : "limits.max_queued_bytes";
    if (persist && durable_.full()) return "persistence.max_size_mb";
    return nullptr;
  };
  const char* limit = queueLimit();
  // Sent at once only with nothing ahead of it: no queue, and nothing in
  // the window waiting its turn (InflightOut::unsent).
  auto windowFree = [&] {
    return online && s.queue.empty() && s.disk_count == 0 && s.inflight.size() < s.client_receive_max &&
           s.inflight.unsent() == 0 && c->roomForOutput();
  };
  bool window_free = windowFree();
  if (limit && !window_free && purgeExpiredHead(s) > 0) {
    // Expired messages made room.
    limit = queueLimit();
    window_free = windowFree();
  }
  if (limit && !window_free) {
    ++s.dropped;
    ++stats_.messages_dropped;
    ++stats_.dropped_queue_full;
    if (!s.drop_logged) {
      s.drop_logged = true;
      LOG_WARN("client %s: queue limit reached (%s), dropping messages; %llu dropped so far",
               s.clientId().c_str(), limit, static_cast<unsigned long long>(s.dropped));
    }
    return DeliverOutcome::NotStored;
  }
  if (persist) d.seq = s.next_seq++;
  if (s.moving && move_hook_) move_hook_(s, d);
  s.queued_bytes += bytes;
  // The first message queued for an offline session heads its queue: the
  // expiry sweep watches it.
  if (!online && d.msg->expires_at_ms && s.queue.empty() && s.disk_count == 0 && !s.sweep_at_ms)
    setSweep(s, d.msg->expires_at_ms);
  if (window_free) {
    // Fast path: the window has room, send now; the store entry carries the
    // packet id already.
    const bool gated = persist && gate && d.qos == 1;
    if (gated) d.gate = gate;
    if (!sendNew(s, *c, std::move(d))) return DeliverOutcome::NotStored;
    if (gated) gate->addReceiver();
    if (!persist) return DeliverOutcome::NotStored;
    return gated ? DeliverOutcome::StoredInGate : DeliverOutcome::Stored;
  }
  if (persist) {
    // Kept until the window drains: the commit decides the PUBACK.
    saveQueueEntry(s, d, 0, false);
    // Beyond the RAM window (or for an offline session whose state is on
    // disk) the entry lives only in the store until the window drains.
    if (s.disk_count > 0 || s.queue.size() >= kRamWindow || s.evicted) {
      if (s.disk_count++ == 0) s.next_read_seq = d.seq;
      return DeliverOutcome::Stored;
    }
  }
  s.queue.push_back(std::move(d));
  return persist ? DeliverOutcome::Stored : DeliverOutcome::NotStored;
}

bool Sessions::sendNew(Session& s, Connection& c, Delivery&& d, bool stored) {
  const uint16_t pid = s.nextPacketId();
  const Connection::OutMark mark = c.outMark();
  // Held below until its packet id is stored.
  const bool held = d.seq && d.qos == 2;
  if (!sendPublish(s, c, d, pid, false, held)) {
    forget(s, d);  // expired or too large for this client
    return false;
  }
  bool id_unsaved = false;
  if (d.seq) {
    if (d.qos == 1 && stored) {
      // A QoS 1 entry from the queue is not rewritten for its packet id:
      // that rewrite was one of the two store writes for each message of a
      // drained backlog (the delete at PUBACK is the other). The id is
      // written when the client goes away, so that a reconnect gets the
      // message again under it, DUP set [MQTT-4.4.0-1]. Only a crash loses
      // it: the message is then sent again as a new one, under a new id,
      // which QoS 1 (at least once) allows.
      id_unsaved = true;
    } else {
      // The entries in flight form a prefix of the queue, and those stored
      // with an id must form a prefix of that: after a crash they are sent
      // again first, and the rest follow as new messages. So earlier ids
      // not yet written go into the same batch, ahead of this one.
      if (s.inflight.unsavedIds()) saveInflightIds(s);
      saveQueueEntry(s, d, pid, false);
      // Exactly once across a crash: the packet id of a QoS 2 PUBLISH must
      // be stored before the client can see it, or a restart would send
      // the message again under a new id, which the client would take as a
      // second message.
      if (d.qos == 2) holds_.hold(c, mark, durable_.awaitedTicket());
    }
  }
  s.inflight.emplace_back(pid, std::move(d), false, id_unsaved);
  return true;
}

void Sessions::saveInflightIds(Session& s) {
  if (!durable_.enabled()) return;
  for (auto& f : s.inflight) {
    if (!s.inflight.unsavedIds()) break;
    if (!f.id_unsaved) continue;
    s.inflight.markSaved(f);
    if (f.d.seq) saveQueueEntry(s, f.d, f.packet_id, false);
  }
}

void Sessions::forget(Session& s, const Delivery& d) {
  const size_t bytes = d.msg ? d.msg->payload.size() : 0;
  s.queued_bytes = s.queued_bytes > bytes ? s.queued_bytes - bytes : 0;
  if (d.seq && durable_.enabled()) durable_.batch().deleteQueue(s.clientId(), d.seq, d.msg ? d.msg->id : 0);
  if (d.group()) groups_.release(*d.group(), d);
  if (d.seq && durable_.enabled()) durable_.released(d.msg);
}

void Sessions::pump(Session& s) {
  Connection* c = s.conn;
  if (!c || c->closing() || !c->connected) return;
  // First what waits its turn in the window (resume(), storeIdsAhead()),
  // in its order.
  while (s.inflight.unsent() && s.inflight.onWire() < s.client_receive_max) {
    InflightOut& f = *s.inflight.firstUnsent();
    if (f.fresh && !c->roomForOutput()) break;  // resumed by onWritable
    s.inflight.markSent(f);
    const uint16_t id = f.packet_id;
    if (!sendInflight(s, *c, f)) s.inflight.erase(id);
  }
  while (s.inflight.size() < s.client_receive_max && queueHead(s)) {
    if (!c->roomForOutput()) break;  // resumed by onWritable
    Delivery d = std::move(s.queue.front());
    s.queue.pop_front();
    sendNew(s, *c, std::move(d), /*stored=*/true);
  }
  if (s.queue.empty() && s.disk_count == 0) s.drop_logged = false;
}

bool Sessions::queueHead(Session& s) {
  if (s.queue.empty() && s.disk_count > 0) refill(s, true);
  return !s.queue.empty();
}

void Sessions::storeIdsAhead(Session& s) {
  // A QoS 2 message from a stored queue is sent only once its packet id is
  // stored (sendNew), and its PUBREL only once the client's PUBREC is: two
  // commits, one after the other, for each window of a drain. Called when
  // a PUBREC is stored, this writes the ids of the next window into the
  // same batch, which is committed before the PUBRECs' PUBRELs go out; the
  // client's PUBCOMPs then free the window for messages whose ids are
  // stored already (pump() sends them), and a drain waits for one commit
  // per window instead of two. After a restart they are sent again in
  // turn, as any entry stored with its id is. Only a run of QoS 2 messages
  // of the session's own queue is taken: a QoS 1 one needs no stored id,
  // and a group's message goes back to its group if the member leaves.
  if (!durable_.enabled() || s.inflight.empty() || s.inflight.back().d.qos != 2) return;
  const size_t ahead = std::min<size_t>(s.client_receive_max, kRamWindow);
  while (s.inflight.unsent() < ahead && s.inflight.size() < 65535 && queueHead(s)) {
    Delivery& d = s.queue.front();
    if (d.qos != 2 || !d.seq || d.group()) break;
    const uint16_t pid = s.nextPacketId();
    // Stored with ids, the entries in flight stay a prefix of the queue
    // (sendNew).
    if (s.inflight.unsavedIds()) saveInflightIds(s);
    saveQueueEntry(s, d, pid, false);
    s.inflight.emplace_back(pid, std::move(d), false, false);
    s.queue.pop_front();
    InflightOut& f = s.inflight.back();
    s.inflight.markUnsent(f);
    f.fresh = true;
    f.id_ticket = durable_.awaitedTicket();
  }
}

bool Sessions::sendInflight(Session& s, Connection& c, InflightOut& f) {
  if (!f.fresh) return resendInflight(s, c, f);
  f.fresh = false;
  const Connection::OutMark mark = c.outMark();
  // Exactly once across a crash, as in sendNew: the client sees the packet
  // id only once it is stored.
  const bool held = f.id_ticket > durable_.committed();
  if (!sendPublish(s, c, f.d, f.packet_id, false, held)) {
    // Expired, or too large for this client: it never saw this id.
    forget(s, f.d);
    return false;
  }
  if (held) holds_.hold(c, mark, f.id_ticket);
  return true;
}

namespace {

// A connection of a worker loop takes the shared encoding by reference.
bool handOver(Connection& c, const PublishCache::Encoded& e, uint8_t qos, uint16_t pid) {
  return c.writeShared(SharedPacket{&e, e.gen, e.bytes, qos ? static_cast<uint32_t>(e.id_at) : 0}, pid);
}

}  // namespace

bool Sessions::sendPublish(Session& s, Connection& c, const Delivery& d, uint16_t pid, bool dup, bool held) {
  const Message& m = *d.msg;
  const bool v5 = c.version == mqtt::Version::V5;
  uint32_t expiry_left = 0;
  if (m.expires_at_ms) {
    const int64_t now = clock_.wallMs();
    // [MQTT-3.3.2-5] an expired message is not delivered.
    if (m.expires_at_ms <= now) {
      ++stats_.messages_dropped;
      ++stats_.messages_expired;
      return false;
    }
    // [MQTT-3.3.2-6] the interval sent is what remains.
    expiry_left = static_cast<uint32_t>((m.expires_at_ms - now + 999) / 1000);
  }
  std::string_view topic = m.topic;
  std::string remote_topic;
  if (c.bridge) {
    // Out over a bridge: the topic as the remote side names it.
    if (!c.bridge->topics().toRemote(m.topic, remote_topic)) return false;
    topic = remote_topic;
    if (!dup) ++c.bridge->counters.forwarded;
  }
  const mqtt::Properties* props = nullptr;
  // Built only for a delivery with properties of its own, in a scratch
  // object of the Sessions: a Properties object is large (a local one
  // alone costs its zeroing on every call), and most deliveries (every
  // MQTT 3.1.1 one) need none.
  bool own_props = false;
  bool alias_new = false;
  if (v5) {
    uint16_t alias = 0;
    bool alias_known = false;
    if (cfg_.outbound_topic_aliases && s.client_topic_alias_max) {
      // Topic aliases toward the client: the first topics get an alias for
      // the life of the connection (§3.3.2.3.4).
      auto& a = c.aliasTables().out;
      auto it = std::find(a.begin(), a.end(), m.topic);
      if (it != a.end()) {
        alias = static_cast<uint16_t>(it - a.begin() + 1);
        alias_known = true;
      } else if (a.size() < std::min(cfg_.outbound_topic_aliases, s.client_topic_alias_max)) {
        a.push_back(m.topic);
        alias = static_cast<uint16_t>(a.size());
        alias_new = true;
      }
    }
    if (m.expires_at_ms || !d.subscription_ids.empty() || alias) {
      // Per-receiver properties on top of the message's own.
      mqtt::Properties& tmp = scratch_props_;
      if (m.props) tmp = *m.props;
      else tmp = mqtt::Properties{};
      if (m.expires_at_ms) tmp.message_expiry_interval = expiry_left;
      tmp.subscription_identifiers.assign(d.subscription_ids.begin(), d.subscription_ids.end());
      if (alias) tmp.topic_alias = alias;
      props = &tmp;
      own_props = true;
    } else if (m.props) {
      props = m.props.get();
    }
    if (alias_known) topic = {};
  }
  // Encode once: nothing of this delivery differs from the other
  // receivers' but the packet id.
  const PublishCache::Encoded* shared = nullptr;
  if (!dup && encoded_.active(m) && !own_props && !c.bridge) shared = &encoded_.get(c.version, d.qos, d.retain, props);
  if (s.client_max_packet &&
      (shared ? shared->bytes.size() : mqtt::publishSize(c.version, topic, d.qos, props, m.payload.size())) >
          s.client_max_packet) {
    // [MQTT-3.1.2-25] never send a packet above the client's Maximum
    // Packet Size: the message is discarded for this client (and a topic
    // alias just assigned for it is taken back: the client never saw it).
    if (alias_new) c.aliases->out.pop_back();
    ++stats_.messages_dropped;
    ++stats_.dropped_too_large;
    LOG_DEBUG("client %s: message on '%s' exceeds its maximum packet size, dropped",
              s.clientId().c_str(), m.topic.c_str());
    return false;
  }
  if (shared) {
    if (!c.onWorkerLoop() || held || !handOver(c, *shared, d.qos, pid))
      PublishCache::append(c.out(), *shared, d.qos, pid);
  } else mqtt::encodePublish(c.out(), c.version, topic, m.payload, d.qos, d.retain, dup, pid, props);
  ++stats_.messages_delivered;
  ++stats_.sent_by_qos[d.qos];
  return true;
}

void Sessions::completeDelivery(Session& s, uint16_t packet_id, InflightOut* inf) {
  // The exchange of an outbound QoS 1/2 message is over: drop it, and let
  // the freed window take the next ones (the session's queue, its groups).
  // Acknowledged in order: the window's front (decided before forget(),
  // which may hand a group's next message to this session's window).
  const bool at_front = inf && inf == &s.inflight.front();
  if (inf) {
    if (inf->d.gate && inf->d.gate->receiverDone()) holds_.gateOpened();
    forget(s, inf->d);
  }
  if (at_front) s.inflight.pop_front();
  else s.eraseInflight(packet_id);
  pump(s);
  groups_.dispatchMemberGroups(s);
}

void Sessions::resume(Session& s, Connection& /*c*/) {
  // A session whose state is on disk reads its first window back.
  if (s.inflight.empty() && s.queue.empty() && s.disk_count > 0) refill(s, false);
  s.evicted = false;
  // [MQTT-4.4.0-1] resend unacknowledged PUBLISH (DUP=1) and PUBREL, in
  // their original order, then whatever queued while offline. No more
  // than the client's Receive Maximum at once [MQTT-3.3.4-9]: a client may
  // come back with a smaller one than it had; the rest wait in the window,
  // in order, and pump() sends them as it frees.
  for (auto& f : s.inflight) s.inflight.markUnsent(f);
  pump(s);
  groups_.dispatchMemberGroups(s);
}

bool Sessions::resendInflight(Session& s, Connection& c, InflightOut& f) {
  if (!f.released) {
    if (sendPublish(s, c, f.d, f.packet_id, true)) return true;
    // Not sent again: it expired while the client was away [MQTT-3.3.2-5]
    // (or exceeds the client's new Maximum Packet Size).
    if (f.d.qos == 1) {
      // The exchange ends here; the packet id is free for the next message.
      if (f.d.gate && f.d.gate->receiverDone()) holds_.gateOpened();
      forget(s, f.d);
      return false;
    }
    // QoS 2: the client may hold this packet id from the first PUBLISH
    // (its PUBREC lost), and would take a new message under it for that
    // duplicate. A PUBREL ends the exchange on both sides without the
    // message: the client answers PUBCOMP and treats the id as new again
    // (§4.3.3), and the entry completes as usual.
    f.released = true;
    if (f.d.seq) saveQueueEntry(s, f.d, f.packet_id, true);
  }
  mqtt::Ack rel;
  rel.type = mqtt::PacketType::Pubrel;
  rel.packet_id = f.packet_id;
  mqtt::encode(rel, c.version, c.out());
  return true;
}

size_t Sessions::purgeExpiredHead(Session& s, size_t max) {
  // A head that never expires ends the purge before it begins: the clock is
  // not read for it (every message over a full queue's limit comes here).
  if (!s.queue.empty() && !s.queue.front().msg->expires_at_ms) return 0;
  const int64_t now = clock_.wallMs();
  auto expired = [now](const Message& m) { return m.expires_at_ms && m.expires_at_ms <= now; };
  size_t n = 0;
  while (n < max && !s.queue.empty() && expired(*s.queue.front().msg)) {
    forget(s, s.queue.front());
    s.queue.pop_front();
    ++n;
  }
  // The rest of the queue waits in the store (an offline session keeps
  // nothing in RAM): its head is read and dropped there, up to the first
  // live message. An expired QoS 1 message that was in flight goes too (a
  // reconnect would drop it rather than send it again); any other entry in
  // flight stops the purge, as does one not yet committed.
  if (n < max && s.queue.empty() && s.disk_count > 0 && durable_.enabled()) {
    // The head alone first: with a queue full of live messages (every
    // message over the limit comes here) that is all there is to read.
    size_t chunk = 1;
    bool more = true;
    while (more && s.disk_count > 0 && n < max) {
      chunk = std::min(chunk, max - n);
      std::vector<persistence::QueueRecord> recs;
      durable_.store().readQueue(s.clientId(), s.next_read_seq, chunk,
                                 [&](persistence::QueueRecord& q) { recs.push_back(std::move(q)); });
      more = recs.size() == chunk;
      chunk = 64;
      // The messages of a chunk in one read transaction.
      std::vector<uint64_t> ids;
      ids.reserve(recs.size());
      for (const auto& q : recs) ids.push_back(q.msg_id);
      const std::vector<MessagePtr> msgs = durable_.loadMessages(ids);
      for (size_t i = 0; i < recs.size(); ++i) {
        const auto& q = recs[i];
        const MessagePtr& m = msgs[i];
        if (!m || !expired(*m) || !purgeable(q)) {
          more = false;
          break;
        }
        durable_.batch().deleteQueue(s.clientId(), q.seq, q.msg_id);
        s.next_read_seq = q.seq + 1;
        --s.disk_count;
        s.queued_bytes -= std::min<uint64_t>(s.queued_bytes, q.bytes);
        ++n;
      }
    }
  }
  if (n) {
    stats_.messages_dropped += n;
    stats_.messages_expired += n;
    LOG_DEBUG("client %s: %zu expired messages left its queue", s.clientId().c_str(), n);
  }
  return n;
}

bool Sessions::ready(const Session& s) const {
  Connection* c = s.conn;
  // A member whose output is full is dispatched to again from onWritable.
  return c && c->connected && !c->closing() && s.inflight.size() < s.client_receive_max &&
         c->roomForOutput();
}

}  // namespace petrel
