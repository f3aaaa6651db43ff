// persistence/records.h — what Petrel keeps in LMDB, as plain structs, and
// the operations a batch (one group commit) carries. No LMDB types here: the
// broker sees only these.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace petrel::persistence {

// An application message, stored once and referenced by id from every
// session queue entry and retained slot that holds it.
struct MessageRecord {
  std::string topic;
  std::string payload;
  std::string props;   // MQTT 5 property block as on the wire (length prefix included); may be empty
  std::string origin;  // publisher's client id (No Local)
  uint8_t qos = 0;
  bool retain = false;
  int64_t expires_at_ms = 0;  // wall clock, 0 = never
};

// A message's fields as views, for reading and writing one without copying
// them: into the store's mapped pages while a read lasts (Store::
// readMessageViews), or into the broker's Message while it is written
// (Batch::putMessage).
struct MessageView {
  std::string_view topic;
  std::string_view payload;
  std::string_view props;
  std::string_view origin;
  uint8_t qos = 0;
  bool retain = false;
  int64_t expires_at_ms = 0;
};

struct WillRecord {
  std::string topic;
  std::string payload;
  std::string props;  // MQTT 5 will property block, may be empty
  uint8_t qos = 0;
  bool retain = false;
};

struct SessionRecord {
  uint8_t version = 4;
  uint32_t expiry_interval = 0;
  int64_t expires_at_ms = 0;  // 0 while connected
  int64_t will_at_ms = 0;     // delayed will deadline, 0 = none pending
  std::optional<WillRecord> will;
  std::optional<std::string> username;  // for authorization of deliveries
};

struct SubscriptionRecord {
  std::string key;     // the filter as subscribed, "$share/g/f" included
  std::string group;   // share name or empty
  std::string filter;  // the filter without the share prefix
  uint8_t qos = 0;
  bool no_local = false;
  bool retain_as_published = false;
  uint8_t retain_handling = 0;
  uint32_t subscription_id = 0;
};

// One message owed to a session, in its queue order (seq). packet_id != 0
// once it has been sent; released = QoS 2 PUBREC received, PUBREL sent.
struct QueueRecord {
  uint64_t seq = 0;
  uint64_t msg_id = 0;
  uint8_t qos = 1;
  bool retain = false;
  bool released = false;
  uint16_t packet_id = 0;
  uint32_t bytes = 0;  // payload size, for the per-session byte limit
  std::vector<uint32_t> subscription_ids;
  // A shared subscription group's message in flight to this member: the
  // group's queue owner key (see SharedGroup::owner), so that it goes back
  // to the group if the member leaves. Empty otherwise. Written only when
  // set, after the other fields (records without it read as before).
  std::string group;
  // An entry of a declared queue (or one in flight from it): when it was
  // queued and when it may no longer be handed out (wall clock ms, 0 =
  // never). Written only when queued_at_ms is set, after `group` (records
  // without them read as before).
  int64_t queued_at_ms = 0;
  int64_t deadline_ms = 0;
};

// A delayed publish waiting in the store (src/delayed/): the key of its
// record, ordered by due time, then message id. The record is the message
// (MessageRecord, addressed to its target topic).
struct DelayedKey {
  int64_t due_ms = 0;  // wall clock, ms since the epoch
  uint64_t msg_id = 0;
  friend bool operator<(const DelayedKey& a, const DelayedKey& b) {
    return a.due_ms < b.due_ms || (a.due_ms == b.due_ms && a.msg_id < b.msg_id);
  }
  friend bool operator==(const DelayedKey& a, const DelayedKey& b) {
    return a.due_ms == b.due_ms && a.msg_id == b.msg_id;
  }
};

// Serialisation helpers (also used by tests and `petrel inspect`).
std::string encodeMessage(const MessageRecord& m);
bool decodeMessage(std::string_view data, MessageRecord& m);
// Appends `m`'s record to `out`.
void encodeMessage(const MessageView& m, std::string& out);
size_t encodedMessageSize(const MessageView& m);  // exact; for reserving room
// `m`'s fields view `data`.
bool decodeMessage(std::string_view data, MessageView& m);
MessageView viewOf(const MessageRecord& m);
MessageRecord recordOf(const MessageView& v);  // copied out
std::string encodeSession(const SessionRecord& s);
bool decodeSession(std::string_view data, SessionRecord& s);
std::string encodeSubscription(const SubscriptionRecord& s);
bool decodeSubscription(std::string_view key, std::string_view data, SubscriptionRecord& s);
std::string encodeQueue(const QueueRecord& q);
bool decodeQueue(uint64_t seq, std::string_view data, QueueRecord& q);

// The store's tables, as a snapshot names them (Batch::putRaw).
enum class Table : uint8_t {
  Meta = 1, Sessions, Subscriptions, Queue, InboundQos2, Messages, Refs, Retained, Delayed,
};
constexpr uint8_t kTableCount = 9;

// A batch of writes that commit together. The loop thread fills one batch
// per loop turn; the writer thread applies it in one transaction.
class Batch {
 public:
  void putMessage(uint64_t id, const MessageRecord& m, uint32_t refs);
  void putMessage(uint64_t id, const MessageView& m, uint32_t refs);
  // Adds `delta` references to message `id`; at zero the message is deleted.
  void addRefs(uint64_t id, int32_t delta);
  void putSession(std::string_view client_id, const SessionRecord& s);
  // Deletes the session with its subscriptions, queue (dropping message
  // references) and inbound QoS 2 state.
  void deleteSession(std::string_view client_id);
  void putSubscription(std::string_view client_id, const SubscriptionRecord& s);
  void deleteSubscription(std::string_view client_id, std::string_view key);
  void putQueue(std::string_view client_id, const QueueRecord& q);
  // Removes a queue entry and drops its reference to msg_id.
  void deleteQueue(std::string_view client_id, uint64_t seq, uint64_t msg_id);
  void putInboundQos2(std::string_view client_id, uint16_t packet_id);
  void deleteInboundQos2(std::string_view client_id, uint16_t packet_id);
  // Sets the retained message of `topic` (msg_id 0 clears it). The store
  // drops the reference the previous retained message held.
  void setRetained(std::string_view topic, uint64_t msg_id);
  // A delayed publish and its message; deleting it deletes both.
  void putDelayed(const DelayedKey& k, const MessageRecord& m);
  void deleteDelayed(const DelayedKey& k);
  // A record of one of the store's tables as it is on disk (a snapshot of
  // another store replayed: Store::snapshot, the cluster's replica).
  void putRaw(Table table, std::string_view key, std::string_view value);
  // An op log written by another batch (ops()), applied as it is: a
  // replica's log replayed. Never deferred.
  void appendOps(std::string_view ops);

  bool empty() const { return ops_.empty(); }
  size_t size() const { return ops_.size(); }
  size_t count() const { return count_; }
  const std::string& ops() const { return ops_; }
  void clear() {
    ops_.clear();
    count_ = 0;
    deletes_only_ = true;
    awaited_ = false;
  }
  // Somebody waits for this batch's commit (an acknowledgement held
  // until it is stored): it is never deferred.
  void markAwaited() { awaited_ = true; }
  // Nothing but deletions (an acknowledged queue entry, a dropped
  // reference, an ended session) and nobody waiting for them: the writer
  // may defer its commit a little to commit more at once (LmdbStore's
  // kDeferDeletesMs). Losing such a commit in a crash only brings back
  // what was deleted -- a message already acknowledged by its receiver is
  // sent again, which QoS 1 allows, and QoS 2 repeats PUBREL, never the
  // PUBLISH it completed.
  bool deferrable() const { return deletes_only_ && !awaited_; }

  enum class Op : uint8_t {
    PutMessage = 1, AddRefs, PutSession, DeleteSession, PutSubscription,
    DeleteSubscription, PutQueue, DeleteQueue, PutInboundQos2, DeleteInboundQos2,
    SetRetained, PutDelayed, DeleteDelayed, PutRaw,
  };

 private:
  void op(Op o) {
    ops_.push_back(static_cast<char>(o));
    ++count_;
    // Not DeleteDelayed: a fired delayed publish whose delete a crash took
    // back would be published again, as a new message.
    if (o != Op::DeleteQueue && o != Op::AddRefs && o != Op::DeleteSession && o != Op::DeleteSubscription &&
        o != Op::DeleteInboundQos2)
      deletes_only_ = false;
  }
  std::string ops_;
  size_t count_ = 0;
  bool deletes_only_ = true;
  bool awaited_ = false;
};

// Key helpers: "<client id>\0<suffix>" keeps a session's records together.
std::string clientKey(std::string_view client_id, std::string_view suffix);
std::string seqKey(std::string_view client_id, uint64_t seq);
std::string u64Key(uint64_t v);
// The same keys written into caller-owned storage (the store's writer
// builds one per op and allocates nothing): 8 bytes big endian, and a
// queue entry's key replacing what `out` held.
void putU64Key(char out[8], uint64_t v);
void seqKeyInto(std::string& out, std::string_view client_id, uint64_t seq);
uint64_t readU64Key(std::string_view k);
// Big-endian due time then message id (16 bytes): the store's order is due
// order.
std::string delayedKey(const DelayedKey& k);
bool readDelayedKey(std::string_view s, DelayedKey& k);

}  // namespace petrel::persistence
