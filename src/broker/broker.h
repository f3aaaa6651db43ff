// src/broker/broker.h — the broker on one libuv loop: listeners, connections,
// sessions, the subscription index and retained messages, and the packet
// handlers that tie them together. The handlers live in files named for
// what they handle (handle_connect.cpp, handle_publish.cpp,
// handle_subscribe.cpp); routing and delivery in router.cpp; wills and
// session ends in will.cpp.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mqtt/decoder.h"
#include "mqtt/packets.h"
#include "persistence/store.h"
#include "src/security/acl.h"
#include "src/config/config.h"
#include "src/transport/connection.h"
#include "src/routing/message.h"
#include "src/security/password_file.h"
#include "src/routing/retained_store.h"
#include "src/security/security.h"
#include "src/sessions/session.h"
#include "src/queues/shared_group.h"
#include "src/routing/topic_tree.h"

namespace petrel {

struct BrokerStats {
  uint64_t messages_received = 0;
  uint64_t messages_delivered = 0;
  uint64_t messages_dropped = 0;   // queue limit, packet size, expiry, output budget
  uint64_t qos0_dropped_output = 0;  // QoS 0 to a client over its output budget
  uint64_t connections_total = 0;
};

// What route() did with a message.
struct RouteResult {
  size_t matched = 0;   // sessions and share groups it went to
  uint32_t stored = 0;  // store references it took (queue entries)
  // Non-null: the publisher's PUBACK may go once this gate opens, before the
  // commit (every stored copy went at once to a durable receiver).
  AckGatePtr early_ack;
};

// What deliver() did with one receiver's copy.
enum class DeliverOutcome : uint8_t {
  NotStored,     // sent (QoS 0, or a session that is not durable), dropped
  StoredInGate,  // stored, sent at once, counted in the gate
  Stored,        // stored and waiting: the PUBACK waits for the commit
};

// The packet being handled: output written for it is held (AckGate,
// HeldOutput) when it made the broker write to the store.
struct FrameContext {
  AckGatePtr early_ack;  // set by handlePublish: the PUBACK may go on this gate
};

class Broker {
 public:
  // Output buffered for one client above which QoS 1/2 messages wait in the
  // session queue instead of being encoded (they are never dropped for
  // lack of buffer space). QoS 0 keeps being buffered up to the client's
  // output budget (limits.max_client_output, see qos0Allowed).
  static constexpr size_t kOutputHighWater = Connection::kOutputHighWater;
  // Queue entries of a durable session kept in RAM; the rest wait on disk.
  static constexpr size_t kRamWindow = 1000;

  Broker(uv_loop_t* loop, Config cfg);
  ~Broker();

  // Takes the persistent store and loads durable sessions, subscriptions,
  // queues and retained messages from it. Call before start().
  bool attachStore(std::unique_ptr<persistence::Store> store, std::string& err);
  // Binds the listeners and starts the timers. On failure, `err` says why.
  bool start(std::string& err);
  // After the loop has ended: waits until everything is committed.
  void finish();
  // Stops accepting, tells MQTT 5 clients the server is shutting down,
  // closes every connection; the loop then runs out.
  void shutdown();

  const Config& config() const { return cfg_; }
  bool shuttingDown() const { return shutting_down_; }
  uv_loop_t* loop() const { return loop_; }
  int64_t nowMs() const;  // wall clock, for expiry deadlines
  const BrokerStats& stats() const { return stats_; }

  // Called by Connection.
  void onFrame(Connection& c, const mqtt::Frame& f);
  void onFramingError(Connection& c, bool too_large);
  void onConnectionLost(Connection& c);    // stop using c; it is closing
  void onConnectionClosed(Connection* c);  // handle closed: free it
  void onWritable(Connection& c);          // output drained below the high-water mark
  // Brings the broker-wide total of buffered output up to date with `c`.
  void accountOutput(Connection& c);
  void scheduleFlush(Connection* c) { dirty_.push_back(c); }
  uint8_t* sharedReadBuffer(size_t& n) {
    n = read_buf_.size();
    return read_buf_.data();
  }
  uint32_t maxPacketSizeFor(const Connection& c) const { return cfg_.max_packet_size; }

  // Routes a message to every matching subscription. `extra_refs` counts
  // holders besides session queues (the retained slot) for the store's
  // record.
  RouteResult route(const MessagePtr& msg, uint32_t extra_refs = 0);
  // Stores `msg` as the retained message of its topic (empty payload
  // clears); returns the store references it takes (0 or 1).
  uint32_t retain(const MessagePtr& msg);

  // One line per shared subscription group (SIGUSR1 writes it to the log).
  std::string groupReport();
  // Publishes the $SYS/broker/... metrics (sys_topics.cpp).
  void publishSys();

  // Reads the TLS certificates, the password file and the ACL file again
  // (SIGHUP). Whatever fails to load is logged and the old one kept.
  void reloadSecurity(const char* why);

 private:
  // handle_connect.cpp
  void handleConnect(Connection& c, const mqtt::Frame& f);
  void sendConnackError(Connection& c, mqtt::Version v, mqtt::Reason r);
  void resumeSession(Session& s, Connection& c);
  // handle_publish.cpp
  void handlePublish(Connection& c, const mqtt::Frame& f, FrameContext& fc);
  void handleAck(Connection& c, const mqtt::Frame& f);
  void completeDelivery(Session& s, uint16_t packet_id);
  // handle_subscribe.cpp
  void handleSubscribe(Connection& c, const mqtt::Frame& f);
  void handleUnsubscribe(Connection& c, const mqtt::Frame& f);
  void sendRetained(Session& s, const std::string& filter, const SubscriptionOptions& o);
  // will.cpp
  void handleDisconnect(Connection& c, const mqtt::Frame& f);
  void publishWill(Session& s);
  void endSession(Session* s);
  // router.cpp
  // Sends or queues `d` for `s`. With a gate, a durable QoS 1 delivery
  // sent at once counts in it (DeliverOutcome).
  DeliverOutcome deliver(Session& s, Delivery&& d, const AckGatePtr& gate = nullptr);
  bool sendPublish(Session& s, Connection& c, const Delivery& d, uint16_t pid, bool dup);
  // Output budgets: false when a QoS 0 message for `c` must be dropped
  // because its buffered output is over its budget (flow_control.cpp).
  bool qos0Allowed(Session& s, Connection& c);
  // Sends a new QoS 1/2 delivery with a fresh packet id and records it in
  // flight (and in the store); false if it could not be sent.
  bool sendNew(Session& s, Connection& c, Delivery&& d);
  void pump(Session& s);
  // A delivery leaves the session (acknowledged, expired, undeliverable).
  void forget(Session& s, const Delivery& d);
  // shared_group.cpp
  bool memberReady(const Session& s) const;
  Subscriber* pickMember(SharedGroup& g, const Message& m);
  // Returns true if the message was written to the store for the group.
  bool groupEnqueue(SharedGroup& g, const MessagePtr& m);
  // Reads the group's queue from the store into its RAM window; returns
  // the entries loaded.
  size_t groupRefill(SharedGroup& g);
  size_t groupLoad(SharedGroup& g, const std::vector<persistence::QueueRecord>& recs);
  // Store writes of a group queue entry; moveToGroup also deletes the
  // member's entry of the same message (a hand-back).
  void putGroupEntry(SharedGroup& g, const Message& m, uint64_t seq);
  void moveToGroup(SharedGroup& g, Session& s, uint64_t member_seq, const Message& m, uint64_t group_seq);
  void dispatchGroup(SharedGroup& g);
  void groupRelease(SharedGroup& g, const Delivery& d);
  void dispatchMemberGroups(Session& s);
  // A member's connection ended (or its session, with `session_ends`):
  // group messages it has not completed go back to their groups.
  void returnToGroups(Session& s, bool session_ends = false);
  void maybeDropGroup(SharedGroup& g);
  // A member's window has room again: its groups may hand it more.
  void afterAck(Session& s) { dispatchMemberGroups(s); }
  void configureGroup(SharedGroup& g);
  void loadGroupQueues();
  // After a restart: QoS 1 group messages that were in flight to members
  // go back to their groups (shared_group.cpp).
  void returnGroupMessagesAfterRestart();
  // The group whose store owner key is `owner`, or null.
  SharedGroup* groupByOwner(std::string_view owner);
  // durable.cpp
  bool loadStore(std::string& err);
  bool durable(const Session& s) const { return store_ && s.expiry_interval > 0; }
  void saveSession(Session& s);
  void saveSubscription(Session& s, std::string_view key, const SubscriptionOptions& o);
  // Removes the subscription `key` ("$share/g/f" or a plain filter) from
  // the topic tree.
  void unsubscribeKey(Session& s, std::string_view key);
  void saveQueueEntry(Session& s, const Delivery& d, uint16_t pid, bool released);
  void refill(Session& s, bool resend);
  void evict(Session& s);
  void scheduleEvict(Session& s);
  bool storeFull();
  MessagePtr loadMessage(uint64_t id);
  void holdOutput(Connection& c, Connection::OutMark mark, const AckGatePtr& gate = nullptr);
  // Releases held output that may go (commits, satisfied gates).
  void releaseHeld();
  void onCommit();
  static void onCommitAsync(uv_async_t* h);
  void forgetSession(Session* s);
  // security.cpp
  bool setupSecurity(std::string& err);
  void stopSecurity();
  void attachListener(Connection& c, uv_stream_t* server);
  bool handshakeTimedOut(Connection& c, uint64_t now);
  mqtt::Reason authenticate(Connection& c, const mqtt::Connect& p,
                            std::optional<std::string>& username, std::string& why);
  void refusePublish(Connection& c, Session& s, const mqtt::Publish& p);
  static void onTlsWatch(uv_timer_t* t);
  // ACL checks; everything is allowed when no acl_file is configured.
  bool mayPublish(const Session& s, std::string_view topic) const {
    return !acl_ || acl_->allows(s.username, s.clientId(), topic, Acl::kWrite);
  }
  bool mayReceive(const Session& s, std::string_view topic) const {
    return !acl_ || acl_->allows(s.username, s.clientId(), topic, Acl::kRead);
  }
  bool maySubscribe(const Session& s, std::string_view filter) const {
    return !acl_ || acl_->allowsSubscribe(s.username, s.clientId(), filter);
  }
  // broker.cpp
  void dispatch(Connection& c, const mqtt::Frame& f, FrameContext& fc);
  void protocolError(Connection& c, mqtt::Reason r, const char* what);
  void sweep();
  void flushAll();
  static void onSweep(uv_timer_t* t);
  static void onCheck(uv_check_t* h);
  static void onPrepare(uv_prepare_t* h);
  static void onConnection(uv_stream_t* server, int status);

  uv_loop_t* loop_;
  Config cfg_;
  std::vector<std::unique_ptr<uv_tcp_t>> listeners_;
  uv_timer_t sweep_timer_;
  uint64_t started_ms_ = 0;
  uint64_t next_sys_ms_ = 0;
  uv_check_t check_;
  uv_prepare_t prepare_;
  std::vector<uint8_t> read_buf_;

  std::vector<Connection*> connections_;  // owned; freed in onConnectionClosed
  std::vector<Connection*> dirty_;        // have output to flush this turn
  // Output buffered for all connections (flow_control.cpp), and how many
  // connections hold more than kOutputHighWater of it.
  size_t closing_connections_ = 0;  // closing, handle not yet closed
  uint64_t output_total_ = 0;
  size_t output_congested_ = 0;
  // Keyed by a view of the session's own client id (no second copy).
  std::unordered_map<std::string_view, std::unique_ptr<Session>> sessions_;
  TopicTree tree_;
  RetainedStore retained_;
  BrokerStats stats_;
  uint64_t match_gen_ = 0;
  bool shutting_down_ = false;

  // Persistence (durable.cpp).
  std::unique_ptr<persistence::Store> store_;
  uv_async_t commit_async_;
  std::atomic<uint64_t> failed_upto_{0};
  std::vector<Connection*> held_conns_;  // have output waiting for a commit
  std::vector<Session*> evict_pending_;
  std::vector<Session*> refill_pending_;
  std::vector<SharedGroup*> group_refill_pending_;  // null: group dropped
  std::unordered_map<uint64_t, std::weak_ptr<const Message>> msg_cache_;
  uint64_t next_msg_id_ = 1;
  bool store_full_logged_ = false;
  bool gates_ready_ = false;  // a gate opened: try releasing held output
  // security.cpp: one entry per listener, in cfg_.listeners order.
  std::vector<std::unique_ptr<ListenerSecurity>> listener_security_;
  std::unique_ptr<PasswordFile> passwords_;  // null: no password_file
  std::unique_ptr<Acl> acl_;                 // null: no acl_file
  uv_timer_t tls_watch_timer_;
  bool tls_watch_started_ = false;

  friend class Connection;
};

}  // namespace petrel
