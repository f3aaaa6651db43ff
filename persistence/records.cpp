#include "persistence/records.h"

#include <endian.h>

#include <cstring>

#include "persistence/codec.h"

namespace petrel::persistence {

namespace {

constexpr uint8_t kRecordVersion = 1;

}  // namespace

MessageView viewOf(const MessageRecord& m) {
  return {m.topic, m.payload, m.props, m.origin, m.qos, m.retain, m.expires_at_ms};
}

size_t encodedMessageSize(const MessageView& m) {
  return 3 + 8 + 4 * 4 + m.topic.size() + m.origin.size() + m.props.size() + m.payload.size();
}

namespace {

void writeMessage(const MessageView& m, Put& o) {
  o.u8(kRecordVersion);
  o.u8(m.qos);
  o.u8(m.retain ? 1 : 0);
  o.i64(m.expires_at_ms);
  o.str(m.topic);
  o.str(m.origin);
  o.str(m.props);
  o.str(m.payload);
}

}  // namespace

void encodeMessage(const MessageView& m, std::string& out) {
  Put o = Put::into(out, encodedMessageSize(m));
  writeMessage(m, o);
}

std::string encodeMessage(const MessageRecord& m) {
  const MessageView v = viewOf(m);
  std::string s;
  s.reserve(encodedMessageSize(v));
  encodeMessage(v, s);
  return s;
}

bool decodeMessage(std::string_view data, MessageView& m) {
  In in{data};
  if (in.u8() != kRecordVersion) return false;
  m.qos = in.u8();
  m.retain = in.u8() != 0;
  m.expires_at_ms = in.fixed<int64_t>();
  m.topic = in.view();
  m.origin = in.view();
  m.props = in.view();
  m.payload = in.view();
  return in.done() && m.qos <= 2;
}

MessageRecord recordOf(const MessageView& v) {
  return MessageRecord{std::string(v.topic), std::string(v.payload), std::string(v.props),
                       std::string(v.origin), v.qos, v.retain, v.expires_at_ms};
}

bool decodeMessage(std::string_view data, MessageRecord& m) {
  MessageView v;
  if (!decodeMessage(data, v)) return false;
  m = recordOf(v);
  return true;
}

std::string encodeSession(const SessionRecord& r) {
  std::string s;
  Out o{s};
  o.u8(kRecordVersion);
  o.u8(r.version);
  o.u32(r.expiry_interval);
  o.i64(r.expires_at_ms);
  o.i64(r.will_at_ms);
  o.u8(r.username ? 1 : 0);
  o.str(r.username.value_or(""));
  o.u8(r.will ? 1 : 0);
  if (r.will) {
    o.u8(r.will->qos);
    o.u8(r.will->retain ? 1 : 0);
    o.str(r.will->topic);
    o.str(r.will->props);
    o.str(r.will->payload);
  }
  return s;
}

bool decodeSession(std::string_view data, SessionRecord& r) {
  In in{data};
  if (in.u8() != kRecordVersion) return false;
  r.version = in.u8();
  r.expiry_interval = in.fixed<uint32_t>();
  r.expires_at_ms = in.fixed<int64_t>();
  r.will_at_ms = in.fixed<int64_t>();
  const bool has_user = in.u8() != 0;
  std::string user = in.str();
  if (has_user) r.username = std::move(user);
  if (in.u8()) {
    WillRecord w;
    w.qos = in.u8();
    w.retain = in.u8() != 0;
    w.topic = in.str();
    w.props = in.str();
    w.payload = in.str();
    r.will = std::move(w);
  }
  return in.done() && r.version >= 3 && r.version <= 5;
}

std::string encodeSubscription(const SubscriptionRecord& r) {
  std::string s;
  Out o{s};
  o.u8(kRecordVersion);
  o.u8(r.qos);
  o.u8((r.no_local ? 1 : 0) | (r.retain_as_published ? 2 : 0));
  o.u8(r.retain_handling);
  o.u32(r.subscription_id);
  o.str(r.group);
  o.str(r.filter);
  return s;
}

bool decodeSubscription(std::string_view key, std::string_view data, SubscriptionRecord& r) {
  In in{data};
  if (in.u8() != kRecordVersion) return false;
  r.key = std::string(key);
  r.qos = in.u8();
  uint8_t f = in.u8();
  r.no_local = f & 1;
  r.retain_as_published = f & 2;
  r.retain_handling = in.u8();
  r.subscription_id = in.fixed<uint32_t>();
  r.group = in.str();
  r.filter = in.str();
  return in.done() && r.qos <= 2 && r.retain_handling <= 2;
}

namespace {

bool queueHasGroup(const QueueRecord& q) { return !q.group.empty() || q.queued_at_ms; }

size_t encodedQueueSize(const QueueRecord& q) {
  return 8 + 1 + 1 + 2 + 4 + 1 + 4 * q.subscription_ids.size() + (queueHasGroup(q) ? 4 + q.group.size() : 0) +
         (q.queued_at_ms ? 16 : 0);
}

void writeQueue(const QueueRecord& q, Put& o) {
  o.u64(q.msg_id);
  o.u8(q.qos);
  o.u8((q.retain ? 1 : 0) | (q.released ? 2 : 0));
  o.u16(q.packet_id);
  o.u32(q.bytes);
  o.u8(static_cast<uint8_t>(q.subscription_ids.size()));
  for (uint32_t id : q.subscription_ids) o.u32(id);
  if (queueHasGroup(q)) o.str(q.group);
  if (q.queued_at_ms) {
    o.u64(static_cast<uint64_t>(q.queued_at_ms));
    o.u64(static_cast<uint64_t>(q.deadline_ms));
  }
}

}  // namespace

std::string encodeQueue(const QueueRecord& q) {
  std::string s;
  Put o = Put::into(s, encodedQueueSize(q));
  writeQueue(q, o);
  return s;
}

bool decodeQueue(uint64_t seq, std::string_view data, QueueRecord& q) {
  In in{data};
  q.seq = seq;
  q.msg_id = in.fixed<uint64_t>();
  q.qos = in.u8();
  uint8_t f = in.u8();
  q.retain = f & 1;
  q.released = f & 2;
  q.packet_id = in.fixed<uint16_t>();
  q.bytes = in.fixed<uint32_t>();
  uint8_t n = in.u8();
  q.subscription_ids.clear();
  for (uint8_t i = 0; i < n && in.ok; ++i) q.subscription_ids.push_back(in.fixed<uint32_t>());
  q.group.clear();
  if (in.ok && !in.atEnd()) q.group = in.str();
  q.queued_at_ms = q.deadline_ms = 0;
  if (in.ok && !in.atEnd()) {
    q.queued_at_ms = static_cast<int64_t>(in.fixed<uint64_t>());
    q.deadline_ms = static_cast<int64_t>(in.fixed<uint64_t>());
  }
  return in.done() && q.qos >= 1 && q.qos <= 2;
}

// --- Batch: an op log, one byte of op code then its operands. ---

void Batch::putMessage(uint64_t id, const MessageRecord& m, uint32_t refs) { putMessage(id, viewOf(m), refs); }

void Batch::putMessage(uint64_t id, const MessageView& m, uint32_t refs) {
  op(Op::PutMessage);
  const size_t n = encodedMessageSize(m);
  Put o = Put::into(ops_, 8 + 4 + 4 + n);
  o.u64(id);
  o.u32(refs);
  o.u32(static_cast<uint32_t>(n));
  writeMessage(m, o);
}

void Batch::addRefs(uint64_t id, int32_t delta) {
  op(Op::AddRefs);
  if (delta > 0) deletes_only_ = false;  // a new holder: not a deletion
  Out o{ops_};
  o.u64(id);
  o.u32(static_cast<uint32_t>(delta));
}

void Batch::putSession(std::string_view cid, const SessionRecord& s) {
  op(Op::PutSession);
  Out o{ops_};
  o.str(cid);
  o.str(encodeSession(s));
}

void Batch::deleteSession(std::string_view cid) {
  op(Op::DeleteSession);
  Out{ops_}.str(cid);
}

void Batch::putSubscription(std::string_view cid, const SubscriptionRecord& s) {
  op(Op::PutSubscription);
  Out o{ops_};
  o.str(cid);
  o.str(s.key);
  o.str(encodeSubscription(s));
}

void Batch::deleteSubscription(std::string_view cid, std::string_view key) {
  op(Op::DeleteSubscription);
  Out o{ops_};
  o.str(cid);
  o.str(key);
}

void Batch::putQueue(std::string_view cid, const QueueRecord& q) {
  op(Op::PutQueue);
  const size_t n = encodedQueueSize(q);
  Put o = Put::into(ops_, 4 + cid.size() + 8 + 4 + n);
  o.str(cid);
  o.u64(q.seq);
  o.u32(static_cast<uint32_t>(n));
  writeQueue(q, o);
}

void Batch::deleteQueue(std::string_view cid, uint64_t seq, uint64_t msg_id) {
  op(Op::DeleteQueue);
  Put o = Put::into(ops_, 4 + cid.size() + 8 + 8);
  o.str(cid);
  o.u64(seq);
  o.u64(msg_id);
}

void Batch::putInboundQos2(std::string_view cid, uint16_t pid) {
  op(Op::PutInboundQos2);
  Out o{ops_};
  o.str(cid);
  o.u16(pid);
}

void Batch::deleteInboundQos2(std::string_view cid, uint16_t pid) {
  op(Op::DeleteInboundQos2);
  Out o{ops_};
  o.str(cid);
  o.u16(pid);
}

void Batch::setRetained(std::string_view topic, uint64_t msg_id) {
  op(Op::SetRetained);
  Out o{ops_};
  o.str(topic);
  o.u64(msg_id);
}

void Batch::putDelayed(const DelayedKey& k, const MessageRecord& m) {
  op(Op::PutDelayed);
  Out o{ops_};
  o.i64(k.due_ms);
  o.u64(k.msg_id);
  o.str(encodeMessage(m));
}

void Batch::deleteDelayed(const DelayedKey& k) {
  op(Op::DeleteDelayed);
  Out o{ops_};
  o.i64(k.due_ms);
  o.u64(k.msg_id);
}

void Batch::putRaw(Table table, std::string_view key, std::string_view value) {
  op(Op::PutRaw);
  Out o{ops_};
  o.u8(static_cast<uint8_t>(table));
  o.str(key);
  o.str(value);
}

void Batch::appendOps(std::string_view ops) {
  ops_.append(ops);
  ++count_;
  deletes_only_ = false;
}

// --- keys ---

void putU64Key(char out[8], uint64_t v) {
  // Big endian so that LMDB's byte order is numeric order.
  const uint64_t be = htobe64(v);
  std::memcpy(out, &be, sizeof be);
}

std::string u64Key(uint64_t v) {
  std::string k(8, '\0');
  putU64Key(k.data(), v);
  return k;
}

uint64_t readU64Key(std::string_view k) {
  if (k.size() >= 8) {
    uint64_t be;
    std::memcpy(&be, k.data(), sizeof be);
    return be64toh(be);
  }
  uint64_t v = 0;
  for (size_t i = 0; i < k.size(); ++i) v = (v << 8) | static_cast<uint8_t>(k[i]);
  return v;
}

std::string delayedKey(const DelayedKey& k) {
  return u64Key(static_cast<uint64_t>(k.due_ms)) + u64Key(k.msg_id);
}

bool readDelayedKey(std::string_view s, DelayedKey& k) {
  if (s.size() != 16) return false;
  k.due_ms = static_cast<int64_t>(readU64Key(s.substr(0, 8)));
  k.msg_id = readU64Key(s.substr(8));
  return true;
}

std::string clientKey(std::string_view cid, std::string_view suffix) {
  std::string k;
  k.reserve(cid.size() + 1 + suffix.size());
  k.append(cid);
  k.push_back('\0');
  k.append(suffix);
  return k;
}

void seqKeyInto(std::string& out, std::string_view cid, uint64_t seq) {
  // Written in place: the key before was most often as long (the same
  // client), so the string neither grows nor fills.
  out.resize(cid.size() + 1 + 8);
  char* p = out.data();
  if (!cid.empty()) std::memcpy(p, cid.data(), cid.size());
  p[cid.size()] = '\0';
  putU64Key(p + cid.size() + 1, seq);
}

std::string seqKey(std::string_view cid, uint64_t seq) {
  std::string k;
  seqKeyInto(k, cid, seq);
  return k;
}

}  // namespace petrel::persistence
