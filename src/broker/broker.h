// src/broker/broker.h — the broker on one libuv loop: it owns the parts and
// wires them together, owns the listeners and the connections, turns each
// decoded packet into a call of its handler (src/handlers/), and flushes
// output and store batches once per loop turn.
//
// The parts (built and wired in parts.h; each folder of src/ has a README
// saying what it owns):
//   Security      security/  listeners' TLS, authentication, ACL
//   Durable       durable/   the store, commits, message records
//   AckHolds      acks/      output waiting for a commit or a gate
//   OutputBudget  sessions/  buffered output per client and in total
//   Sessions      sessions/  the registry, delivery, durable queues
//   Router        routing/   topic tree, retained messages, route()
//   SharedGroups  queues/    share groups as work queues
//   DelayedPublish delayed/  $delayed/<N>/<topic>: held until due
//   SysTopics     metrics/   $SYS
//   Monitor       metrics/   rates, loop lag, the figures of /metrics
//   Bridges       bridges/   client connections to remote brokers
//   HttpServer    httpd/     the operators' HTTP endpoint
//   Cluster       cluster/   the other nodes of a cluster, over NATS
// Time-driven work (keep alive, timeouts, will delay, expiry, $SYS) runs
// from the timer facility (timers/): one timer per connection, one per
// offline session with a deadline, one for $SYS; no periodic scan.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mqtt/decoder.h"
#include "mqtt/packets.h"
#include "persistence/store.h"
#include "src/bridges/bridges.h"
#include "src/broker/parts.h"
#include "src/cluster/cluster.h"
#include "src/cluster/adoption.h"
#include "src/cluster/session_moves.h"
#include "src/httpd/http_server.h"
#include "src/metrics/monitor.h"
#include "src/metrics/sys_topics.h"
#include "src/transport/ack_poller.h"
#include "src/transport/connection.h"
#include "src/transport/io_workers.h"

namespace petrel {

// The packet being handled: output written for it is held (AckHolds) when
// it made the broker write to the store.
struct FrameContext {
  AckGatePtr early_ack;  // set by handlePublish: the PUBACK may go on this gate
};

class Broker : private BrokerParts {
 public:
  Broker(uv_loop_t* loop, Config cfg);
  ~Broker();

  // Takes the persistent store and loads durable sessions, subscriptions,
  // queues and retained messages from it. Call before start().
  bool attachStore(std::unique_ptr<persistence::Store> store, std::string& err);
  // The store is empty and its cluster replica was not read back (NATS did
  // not answer): a replica found later is left as it is. Before start().
  void guardEmptyReplica() { cluster_.guardEmptyReplica(); }
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

  // Called by Connection.
  void onFrame(Connection& c, const mqtt::Frame& f);
  void onFramingError(Connection& c, bool too_large);
  void onConnectionLost(Connection& c);    // stop using c; it is closing
  void onConnectionClosed(Connection* c);  // handle closed: free it
  void onWritable(Connection& c);          // output drained below the high-water mark
  // A read of c has been handled (src/transport/ack_poller.h).
  void onInputDone(Connection& c) { ack_poller_.onInputDone(c); }
  // A worker loop's read of a full-window subscriber, handled ahead of other
  // input (src/transport/io_workers.h).
  void countUrgentRead() { ++stats_.ack_reads_between_reads; }
  void onBridgeConnected(Connection& c, int status) { bridges_.onConnected(c, status); }
  void accountOutput(Connection& c) { budget_.account(c); }
  // MQTT bytes (plaintext) read from and handed to a connection's stack.
  void countBytes(size_t received, size_t sent) {
    stats_.bytes_received += received;
    stats_.bytes_sent += sent;
  }
  void scheduleFlush(Connection* c) { dirty_.push_back(c); }
  uint8_t* sharedReadBuffer(size_t& n) {
    n = read_buf_.size();
    return read_buf_.data();
  }
  uint32_t maxPacketSizeFor(const Connection&) const { return cfg_.max_packet_size; }

  // One line per shared subscription group (SIGUSR1 writes it to the log).
  std::string groupReport() { return groups_.report(); }
  // Reads the TLS certificates, the password file and the ACL file again
  // (SIGHUP). Whatever fails to load is logged and the old one kept.
  void reloadSecurity(const char* why) {
    security_.reload(why);
    http_.reloadTls(why);
  }
  // Applies the `queues:` section of a configuration read again (SIGHUP);
  // the rest of the configuration is not reloaded.
  void applyQueues(const std::vector<QueueConfig>& queues) { groups_.applyQueues(queues); }

  // For SysTopics: the connections, read-only.
  const std::vector<Connection*>& connections() const { return connections_; }

 private:
  // handlers/connect.cpp
  void handleConnect(Connection& c, const mqtt::Frame& f);
  // After authentication's password check (`checked`; null: none ran).
  // `old_input_read`: the connection holding the session has had its
  // input read up (waitForInputOf), so the CONNECT does not wait again.
  void continueConnect(Connection& c, mqtt::Connect&& p, const PasswordFile::Result* checked,
                       bool old_input_read = false);
  // A CONNECT that waited off the loop goes on: what it writes is held
  // until the commit of what it stores, as if handled at once, and its
  // connection reads again (unless it waits once more).
  void resumeConnect(Connection& c, mqtt::Connect&& p, const PasswordFile::Result* checked, bool old_input_read);
  // A CONNECT for a session whose connection `old` lives on a worker loop
  // waits until that loop has read what `old`'s socket holds and it has
  // been handled here: a client that sent DISCONNECT and at once connected
  // again must find its session as that DISCONNECT left it, although the
  // two connections' bytes come through different loops. False: no need
  // (`old` is on this loop, or closing); the CONNECT goes on now.
  bool waitForInputOf(Connection& old, Connection& c, mqtt::Connect& p, const PasswordFile::Result* checked);
  void inputOfOldRead(uint64_t ticket);
  // A CONNECT that waited under `ticket` (the old connection's input, a
  // session moving here from another node) goes on, or closes.
  void resumeWaitingConnect(uint64_t ticket, bool close);
  // A CONNECT held (auth_ticket) is given up: whatever answers it later
  // finds nothing.
  void forgetHeldConnect(Connection& c);
  void startPasswordChecks();
  static void checkPasswordWork(uv_work_t* req);
  static void passwordChecked(uv_work_t* req, int status);
  void sendConnackError(Connection& c, mqtt::Version v, mqtt::Reason r);
  // handlers/publish.cpp
  void handlePublish(Connection& c, const mqtt::Frame& f, FrameContext* fc);
  void handleAck(Connection& c, const mqtt::Frame& f);
  void handlePuback(Session& s, uint16_t packet_id);
  void refusePublish(Connection& c, Session& s, const mqtt::Publish& p);
  // Acknowledged as received and dropped (nothing owed it).
  void acknowledgeDropped(Connection& c, Session& s, const mqtt::Publish& p);
  // handlers/delayed_publish.cpp
  void scheduleDelayed(Connection& c, Session& s, const mqtt::Publish& p, const MessagePtr& m, int64_t due_ms);
  void refuseDelayed(Connection& c, Session& s, const mqtt::Publish& p, mqtt::Reason why, std::string_view topic);
  // handlers/subscribe.cpp
  void handleSubscribe(Connection& c, const mqtt::Frame& f);
  void handleUnsubscribe(Connection& c, const mqtt::Frame& f);
  // handlers/disconnect.cpp
  void handleDisconnect(Connection& c, const mqtt::Frame& f);
  // broker/load.cpp
  bool loadStore(std::string& err);
  // broker.cpp
  // `fc` is null when the packet cannot cause store writes (or there is no
  // store): nothing of its answer will be held.
  void dispatch(Connection& c, const mqtt::Frame& f, FrameContext* fc);
  // Dispatch of a packet that may write to the store: its answer is held
  // until the commit (or its gate).
  void dispatchHolding(Connection& c, const mqtt::Frame& f);
  void protocolError(Connection& c, mqtt::Reason r, const char* what);
  // The security settings of the listener `server` (null: none).
  const ListenerSecurity* listenerOf(uv_stream_t* server) const;
  // A connection in the list, not started (a bridge connects it).
  Connection* newConnection();
  void onCommit(bool failed);
  void flushAll();
  // broker/connection_timeouts.cpp: keep alive, the CONNECT and TLS
  // handshake timeouts, lingering after a close.
  void armConnectionTimer(Connection& c);
  void connectionTimeout(Connection& c);
  bool handshakeTimedOut(Connection& c, uint64_t now);
  // The broker holds `c`'s CONNECT under `ticket` (Connection::auth_ticket):
  // input paused, answered within limits.max_connect_wait.
  void holdConnect(Connection& c, uint64_t ticket);
  uint64_t connectHeldMs() const { return uint64_t(cfg_.max_connect_wait) * 1000; }
  static void onConnectionTimer(Timer& t);
  static void onSysTimer(Timer& t);
  static void onExpirySweepTimer(Timer& t);
  static void onCheck(uv_check_t* h);
  static void onPrepare(uv_prepare_t* h);
  static void onConnection(uv_stream_t* server, int status);
  // The HTTP endpoint's view of the broker; /readyz.
  HttpServer::Endpoints httpEndpoints();
  bool ready(std::string& why) const;

  uv_loop_t* loop_;
  IoWorkers io_;  // `workers:`: the loops connections are spread over
  SysTopics sys_;
  Bridges bridges_;
  Monitor monitor_;
  HttpServer http_;
  Cluster cluster_;
  Adoption adoption_;   // a down node's durable sessions, served here
  SessionMoves moves_;  // durable sessions following their clients between nodes

  std::vector<std::unique_ptr<uv_tcp_t>> listeners_;
  Timer sys_timer_;  // $SYS every mqtt.sys_interval seconds
  Timer expiry_sweep_timer_;  // expired entries at the heads of groups' and offline sessions' queues, 4 a second
  uv_check_t check_;
  uv_prepare_t prepare_;
  std::vector<uint8_t> read_buf_;
  std::vector<Connection*> connections_;  // owned; freed in onConnectionClosed
  std::vector<Connection*> dirty_;        // have output to flush this turn
  AckPoller ack_poller_{stats_};
  std::vector<Connection*> flushed_;      // dirty_ of the turn before, emptied (flushAll)
  size_t closing_connections_ = 0;        // closing, handle not yet closed

  // Password checks running on libuv's worker threads (handlers/connect.cpp).
  struct PendingAuth {
    uv_work_t req;
    Broker* broker;
    uint64_t ticket;
    const ListenerSecurity* listener;
    std::shared_ptr<const PasswordFile> passwords;
    mqtt::Connect connect;
    PasswordFile::Result result = PasswordFile::Result::WrongPassword;
  };
  // At most this many checks wait per listener; beyond, CONNECT is refused
  // with "server busy" (a guessing client cannot queue up work for hours).
  static constexpr uint32_t kMaxPendingAuthPerListener = 64;
  std::unordered_map<uint64_t, Connection*> pending_auth_;  // by ticket
  // CONNECTs waiting for another connection's input (waitForInputOf), by
  // ticket (the same numbers as pending_auth_'s).
  struct WaitingConnect {
    Connection* conn;
    mqtt::Connect connect;
    std::optional<PasswordFile::Result> checked;
  };
  std::unordered_map<uint64_t, WaitingConnect> waiting_connects_;
  std::deque<PendingAuth*> auth_queue_;  // waiting for a worker
  unsigned auth_running_ = 0;            // on libuv's workers now
  std::unordered_map<const ListenerSecurity*, uint32_t> pending_auth_per_listener_;
  uint64_t next_auth_ticket_ = 1;
  bool shutting_down_ = false;

};

}  // namespace petrel
