// src/cluster/cluster.h — this node's link to the other nodes of a cluster,
// over core NATS (the `cluster:` section).
//
// Routing across nodes: for every filter this node has subscriptions to
// (plain or a share group's; TopicTree's interest hook) it subscribes to
// the filter's subjects (subjects.h) and announces the filter to the other
// nodes (remote_interest.h). Every message routed here that did not come
// from another node, and that some other node's filter matches, is
// published on its topic's subject. So a message reaches each node that has
// a matching subscription once, not once per subscriber; a node with none
// never sees it; and traffic among one node's own clients never leaves it.
// A node matches what arrives against its own subscriptions as if a client
// had published it here, and never sends it on.
//
// A node's announcements and its messages travel on its one NATS
// connection, in order, and reach the other nodes through one delivery
// thread, in order: a node that subscribes and then publishes a request
// is known to want the reply before anyone has the request.
//
// Threads: the NATS client reads and calls back on its own threads (one
// delivery thread for every subscription, so messages arrive in the order
// the server sent them). The callback copies the message into an inbox
// under a short lock and wakes the loop with a uv_async_send; everything
// else runs on the loop. Publishing and (un)subscribing only queue protocol
// lines in the client, which its own thread writes: the loop never waits
// for the network.
//
// Retained messages are the cluster's (with JetStream): each node puts
// the ones published on it in a key-value bucket and takes every other
// node's from it (bucket.h; bucketEvent() says how the two copies stay in
// step).
//
// A client id is connected to one node at a time, cluster-wide (with
// JetStream): each node puts "client X connected here" in the session
// registry's bucket, and a node whose client X was registered before
// another node's registration of X (in the bucket's order) closes that
// connection with 0x8E, session taken over (registryEvent()).
//
// QoS 1 and 2 messages cross through a JetStream stream instead (with
// JetStream): stored before the publisher's PUBACK, acknowledged by the
// receiving node once it has stored them (stream.h; forwardStored(),
// takeStream()). QoS 0 crosses the core way, at most once (a link down, or
// a node behind by more than max_pending_mb, loses what was in transit,
// counted).
//
// A durable session follows its client to another node
// (session_moves.h: the moves' messages travel on each node's own
// subject, sendMove() and setOnMove()).
//
// Share groups are the cluster's (with JetStream): a group's messages
// wait in the groups' stream, one consumer per group read by every node
// with members of it (group_stream.h; toGroup(), takeGroups()); what no
// other node's filter matches stays the node's own until another node
// wants it (giveToGroup()).
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "src/acks/ack_gate.h"
#include "src/cluster/remote_interest.h"
#include "src/cluster/bucket.h"
#include "src/cluster/group_stream.h"
#include "src/cluster/store_replica.h"
#include "src/cluster/stream.h"
#include "src/cluster/wire.h"
#include "src/config/config.h"
#include "src/routing/message.h"
#include "src/util/keyed_hash.h"

struct __natsConnection;
struct __natsSubscription;
struct __natsMsg;

namespace petrel {

class Clock;
class Durable;
class Router;
struct SharedGroup;

class Cluster {
 public:
  struct Parts {
    const ClusterConfig& cfg;
    uv_loop_t* loop;
    Router& router;
    Durable& durable;
    const Clock& clock;
  };
  struct Counters {
    uint64_t sent = 0;           // messages published to the other nodes
    uint64_t received = 0;       // messages taken from them
    uint64_t duplicates = 0;     // the same message through a second subscription
    uint64_t dropped = 0;        // lost on the way in: inbox full, slow consumer, undecodable
    uint64_t send_failed = 0;    // the client refused a publish (its buffer full while reconnecting)
    uint64_t kept = 0;           // not sent: no other node has a filter that matches
    // The retained messages' bucket (bucket.h):
    uint64_t retained_put = 0;       // this node's retained messages (and clearings) the bucket took
    uint64_t retained_taken = 0;     // other nodes' taken from it into this node's store
    uint64_t retained_failed = 0;    // the bucket refused (too large for NATS, a bad key)
    bool retained_watching = false;  // the bucket is open and watched (JetStream answers)
    bool sessions_watching = false;  // the session registry's bucket is open and watched
    uint64_t taken_over = 0;         // this node's clients closed (0x8E): they connected to another node
    // QoS 1 and 2 between nodes, through the cluster's stream (stream.h):
    bool stream_ready = false;       // the stream and this node's consumer are open
    uint64_t stream_stored = 0;      // copies for other nodes the stream stored
    uint64_t stream_failed = 0;      // copies it refused for good (too large)
    uint64_t stream_taken = 0;       // copies for this node taken from it (a stream message holds several)
    uint64_t stream_waiting = 0;     // copies for other nodes not stored yet (now)
    uint64_t stream_retried = 0;     // stream messages published again (no answer, no leader yet)
    uint64_t stream_overflow = 0;    // sent at most once instead: too many waiting
    uint64_t unnamed = 0;            // sent at most once instead: a node not known by name yet
    // Durable sessions moved between nodes (session_moves.h):
    uint64_t moved_in = 0;           // sessions taken from other nodes
    uint64_t moved_out = 0;          // sessions other nodes took from this one
    uint64_t moved_messages_in = 0;  // queued messages they brought here
    uint64_t moved_messages_out = 0; // and that this node sent
    uint64_t move_failed = 0;        // moves given up (no answer in time, a bad part)
    // Down nodes' durable sessions taken here (adoption.h):
    uint64_t adopted_nodes = 0;      // nodes
    uint64_t adopted_sessions = 0;   // their sessions
    uint64_t adopted_messages = 0;   // the queued messages and delayed publishes they brought
    uint64_t adopt_failed = 0;       // adoptions that failed (no replica, a read that failed)
    // Share groups across the cluster (group_stream.h):
    uint64_t groups = 0;             // groups with members (or declared) here (now)
    uint64_t group_stored = 0;       // group copies the groups' stream stored (or had already)
    uint64_t group_taken = 0;        // taken from it for members here
    uint64_t group_returned = 0;     // given back to it: no member here could take them
    uint64_t group_held = 0;         // taken and not yet acknowledged by a member (now)
    // The replica of this node's store (store_replica.h):
    bool replica = false;            // kept (JetStream and persistence on)
    bool replica_live = false;       // acknowledgements wait for it
    uint64_t replica_snapshots = 0;  // snapshots stored in this run
    uint64_t replica_bytes = 0;      // the last snapshot and the log after it
    uint64_t replica_records = 0;    // log records stored in this run
    uint64_t replica_stalls = 0;     // times it stopped being live
  };

  // A node with more filters than this announces "every message" instead
  // of each one (and lists them again below half of it).
  static constexpr size_t kAnnounceMax = 10000;
  // Each node's status (NodeStatus) to the others every kStatusMs; a node
  // whose status has not come for kGoneMs is no longer listed (its filters
  // stay until kForgetMs: it may be cut off from NATS for a moment).
  static constexpr uint64_t kStatusMs = 5000;
  static constexpr uint64_t kGoneMs = 3 * kStatusMs;
  // Full announcements every kRefreshMs; a node not heard from for
  // kForgetMs is forgotten (it died; a live one says hello when it is back).
  static constexpr uint64_t kRefreshMs = 60 * 1000;
  static constexpr uint64_t kForgetMs = 5 * kRefreshMs;
  // With JetStream a node that stopped or was not heard from keeps its
  // filters this long (its durable sessions are owed what matches them: the
  // stream keeps it until the node is back).
  static constexpr uint64_t kAwayKeepMs = 60 * 60 * 1000;
  // Copies for other nodes waiting for the stream (its link down, or
  // JetStream slower than the publishers), at most; beyond it QoS 1 and 2
  // messages go the core way (at most once), counted.
  static constexpr size_t kStreamWaitingMax = 100000;
  // A stream message waits this long, at most, for the control messages
  // its node sent before it.
  static constexpr uint64_t kControlWaitMs = 250;

  // What the client's threads share with the loop (cluster.cpp).
  struct Inbox;
  struct InboxBatch;

  // What this node tells the others of its clients (the broker's counts).
  struct LocalCounts {
    uint64_t clients = 0;
    uint64_t sessions = 0;
  };
  // A node of the cluster, as its last status said.
  struct NodeView {
    cluster::NodeStatus status;
    bool self = false;
    uint64_t heard_ms_ago = 0;
  };

  explicit Cluster(const Parts& p);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  bool enabled() const { return cfg_.enabled; }
  void setLocalCounts(std::function<LocalCounts()> f) { local_counts_ = std::move(f); }
  // Whether a client is connected to this node, and closing its
  // connection (0x8E) when it has connected to node `by` since.
  void setTakeOver(std::function<bool(const std::string& client_id)> connected_here,
                   std::function<void(const std::string& client_id, const std::string& by)> take_over) {
    connected_here_ = std::move(connected_here);
    take_over_ = std::move(take_over);
  }
  // QoS 1 and 2 messages other nodes want are acknowledged once the
  // cluster's stream has their copies (cluster.jetstream).
  bool holdsAcks() const { return jetstream(); }
  // While a client's packet is handled: a QoS 1 or 2 message it publishes
  // that goes to the stream makes `*g` (made if null) wait for its copies.
  void collectGate(AckGatePtr* g) { collecting_ = g; }
  // Called on the loop when such a gate opened.
  void setOnStored(std::function<void()> f) { on_stored_ = std::move(f); }
  // The store committed up to `committed` (or failed to): copies taken
  // from the stream that this node has stored are acknowledged to it.
  void afterCommit(uint64_t committed, bool failed);
  // The end of a loop turn: what forwardStored() gathered goes to the
  // stream (a batch per node).
  void flushStream() {
    if (!batches_.empty()) sendBatches();
  }
  // A client connected to this node (after its CONNACK is written).
  void clientConnected(const std::string& client_id);

  // Moving durable sessions between nodes (src/cluster/session_moves.h):
  // each node reads its own subject "<name>.h.<node>"; what comes there
  // goes to `f`, on the loop.
  void setOnMove(std::function<void(std::string_view body)> f) { on_move_ = std::move(f); }
  // Fills the move counters of counters().
  void setMoveCounters(std::function<void(Counters&)> f) { move_counters_ = std::move(f); }
  // To node `token`'s subject; false when the client refused it.
  bool sendMove(std::string_view token, const std::string& body);
  // This node's name as a subject token, and its id (new at every start).
  const std::string& ownToken() const { return own_token_; }
  uint64_t nodeId() const { return node_id_; }
  // Sessions can move: the registry and the stream are open.
  bool movesSessions() const { return jetstream() && registry_ && connected(); }
  // The node the session registry last named for `client_id`, when that
  // is another node (by name) whose status came within kGoneMs; null
  // otherwise.
  struct Owner {
    uint64_t node = 0;
    std::string name;
    std::string token;
  };
  const Owner* ownerElsewhere(const std::string& client_id) const;
  // The same, up or not; null when the registry names this node or none.
  const Owner* registeredOwner(const std::string& client_id) const {
    auto it = owners_.find(client_id);
    return it == owners_.end() || it->second.token == own_token_ ? nullptr : &it->second;
  }
  // No status from node `token` for kStatusMs + kDownSlackMs (or kGoneMs).
  bool nodeQuiet(std::string_view token) const;
  // Its status came within kStatusMs + kDownSlackMs: up, whatever NATS said before.
  bool nodeHeard(std::string_view token) const {
    const int64_t heard = lastHeard(token);
    return heard >= 0 && !nodeQuiet(token);
  }
  // The registry's latest node for `client_id` (up or not, this node
  // too), by its name's token; null when it has none.
  const std::string* registeredToken(const std::string& client_id) const;
  // A node of that name's token is up (its status came within kGoneMs).
  bool nodeUp(std::string_view token) const;

  // Taking the sessions of a node that is down (src/cluster/adoption.h).
  // A move request to node `token` (sendMove's), with a reply subject:
  // when nothing listens on that node's subject, NATS says so at once and
  // `f(move)` is called (setOnUnanswered), on the loop.
  bool sendMoveRequest(std::string_view token, const std::string& body, uint64_t move);
  void setOnUnanswered(std::function<void(uint64_t move)> f) { on_unanswered_ = std::move(f); }
  // Nothing listened on node `token`'s subject just now.
  void unanswered(const std::string& token);
  // Node `token` is down: no status from it for kGoneMs; or none for
  // kStatusMs + kDownSlackMs, and a move request to it found nothing
  // listening since its last one (a process killed: NATS knows at once).
  bool nodeDown(std::string_view token) const;
  static constexpr uint64_t kDownSlackMs = 1000;
  // A node that said bye is not down before this (it may be restarting).
  static constexpr uint64_t kByeGraceMs = 3000;
  // The node that takes the sessions of node `token`, down: of this node
  // and the others up, the one whose name's token sorts first.
  std::string adopterFor(std::string_view token) const;
  // Standing in for node `token`, down, whose sessions this node took:
  // its consumer of the cluster's stream is read here too, and what it
  // holds goes to the sessions tagged `tag` alone (Message::adopted_from),
  // acknowledged once stored as this node's own. False without the stream.
  bool standIn(const std::string& token, uint32_t tag);
  bool standInReady(const std::string& token) const;
  // Stream::settledMarks() of that consumer: grown by two since a moment,
  // everything it held then has been taken.
  uint64_t standInSettled(const std::string& token) const;
  void endStandIn(const std::string& token);
  // The other nodes (and this one) forget node `token`'s filters: its
  // sessions are served here now, and nothing more is sent for it.
  void sendAdopted(const std::string& token);
  // The NATS link and the section, for the adoption's own thread.
  __natsConnection* natsConnection() const { return nc_; }
  const ClusterConfig& config() const { return cfg_; }
  // Stream::settledMarks() as read before the loop last took what the
  // stream had: once it has grown by two since a moment, everything the
  // stream held for this node then has been routed. Counted while watched.
  void watchStreamSettled(bool on) {
    if (stream_) stream_->watchSettled(on);
  }
  uint64_t streamSettledSeen() const { return stream_settled_seen_; }
  // Hooks the router and the topic tree. Before the store is loaded, so
  // that the subscriptions it holds count as interest.
  void attach();
  // Connects (in the background: the node starts whether or not NATS is
  // up, and keeps trying). False with `err` on options NATS refuses (a TLS
  // file that does not load).
  bool start(std::string& err);
  // Shutting down: no more sending or taking; the link closes.
  void stop();

  bool connected() const { return connected_.load(); }
  // Retained messages go through the cluster's bucket (cluster.jetstream).
  bool jetstream() const { return enabled() && cfg_.jetstream; }
  // Another node has a filter that matches `topic`, as far as this node has
  // heard (for "no matching subscribers": the message is sent exactly when
  // this is true).
  bool othersWant(std::string_view topic) const { return enabled() && remote_.wants(topic); }
  const std::string& nodeName() const { return node_name_; }
  Counters counters() const;
  // The node started on an empty store without reading its replica back
  // (NATS did not answer): a replica found is not overwritten. Before start().
  void guardEmptyReplica() { replica_guard_ = true; }
  // This node first, then the others heard from within kGoneMs, by name.
  std::vector<NodeView> nodes() const;
  // $SYS/broker/cluster/state|node|sent|received|duplicates|dropped|send_failed|kept
  // (every mqtt.sys_interval): this node's own, never sent to the others.
  void publishSys();

 private:
  struct Interest {
    std::vector<__natsSubscription*> subs;
  };
  void onInterest(std::string_view filter, bool on);
  void subscribe(const std::string& filter, Interest& i);
  void forward(const MessagePtr& m);
  // A QoS 1 or 2 message to the nodes that want it, through the stream;
  // false when it must go the core way (a node not known by name yet, too
  // many copies waiting).
  bool forwardStored(const Message& m);
  void stamp(const Message& m, uint64_t seq);
  // Share groups (group_stream.h): a group's copy of a message routed
  // here to the groups' stream (the router's group hook); what the stream
  // has for this node's members; a group made or dropped here; a taken
  // message done with or given back; how many more the group may take.
  bool toGroup(SharedGroup& g, const MessagePtr& m);
  bool giveToGroup(SharedGroup& g, const MessagePtr& m, uint64_t seq);
  void takeGroups(int64_t now_ms);
  void groupMade(SharedGroup& g, bool made);
  void settleGroup(const Message& m, bool done);
  void groupRoom(SharedGroup& g);
  static void onGroupProgress(uv_timer_t* t);
  // Stream messages taken and routed whose commit and group copies are
  // done are acknowledged.
  void ackRouted();
  void takeStream(int64_t now_ms);
  // A stream message taken from `from` (this node's consumer, or a down
  // node's it stands in for: `adopted` its sessions' tag).
  void routeStream(cluster::Stream& from, cluster::Stream::In& in, int64_t now_ms, uint32_t adopted = 0);
  bool parseStreamSubject(const cluster::Stream& from, std::string_view subject, uint64_t& to, uint64_t& index) const;
  // The wall time of the last status from a node of that token; -1: none within kGoneMs.
  int64_t lastHeard(std::string_view token) const;
  // Every id a node of that token had is forgotten (its filters).
  void forgetNode(std::string_view token);
  // `in` came from a node whose control messages sent before it have not
  // all arrived here yet.
  bool waitsForControl(const cluster::Stream::In& in) const;
  static void onControlWait(uv_timer_t* t);
  // A node's full announcement ended: the same node under an older id (it
  // restarted) is forgotten.
  void forgetOlder(uint64_t node);
  // Retained messages (jetstream: true): a local one to the bucket; what
  // the bucket's watch sees into this node's store.
  void onRetain(const MessagePtr& m);
  // `only_new`: the bucket takes it only while it holds nothing for the
  // topic (Bucket::put).
  void putRetained(const Message& m, bool only_new = false);
  void bucketEvent(cluster::Bucket::Event& e, int64_t now_ms);
  void registryEvent(const cluster::Bucket::Event& e);
  void endSync(int64_t now_ms);
  static void onAsync(uv_async_t* h);
  void takeInbox();
  void control(const uint8_t* data, size_t len, int64_t now_ms);
  void announce(cluster::ControlKind kind, std::string_view filter = {});
  // Every filter again, as generation gen_ + 1; then "end".
  void announceAll();
  static void onRefresh(uv_timer_t* t);
  static void onStatusTimer(uv_timer_t* t);
  cluster::NodeStatus ownStatus() const;
  void sendStatus();

  const ClusterConfig& cfg_;
  uv_loop_t* loop_;
  Router& router_;
  Durable& durable_;
  const Clock& clock_;
  std::string node_name_;
  uint64_t node_id_;
  uint64_t seq_ = 0;
  std::string body_;  // forward()'s buffer
  std::string subject_;
  __natsConnection* nc_ = nullptr;
  std::shared_ptr<Inbox> inbox_;
  std::unique_ptr<InboxBatch> work_;  // the batch the loop works through
  uv_async_t async_;
  bool async_open_ = false;
  bool stopped_ = false;
  std::atomic<bool> connected_{false};
  std::unordered_map<std::string, Interest, KeyedHash, std::equal_to<>> interest_;  // by filter
  __natsSubscription* control_sub_ = nullptr;
  std::string control_subject_;
  std::string control_body_;
  uint64_t gen_ = 0;              // of this node's announcements
  bool announcing_all_ = false;   // "every message" announced, not the filters
  cluster::RemoteInterest remote_;
  uv_timer_t refresh_;
  bool refresh_open_ = false;
  uv_timer_t status_timer_;
  bool status_open_ = false;
  std::function<LocalCounts()> local_counts_;
  std::function<bool(const std::string&)> connected_here_;
  std::function<void(const std::string&, const std::string&)> take_over_;
  std::string status_rest_;
  struct Peer {
    cluster::NodeStatus status;
    int64_t heard_ms = 0;
  };
  std::unordered_map<uint64_t, Peer> peers_;  // by node id
  // The last sequence number taken from each node (by node id), and when.
  struct Seen {
    uint64_t seq = 0;
    uint64_t at_ms = 0;
  };
  std::unordered_map<uint64_t, Seen> seen_;
  Counters counters_;
  std::unique_ptr<cluster::Bucket> bucket_;  // the retained messages
  std::vector<cluster::Bucket::Event> bucket_events_;
  // The session registry: client id -> the node it last connected to.
  std::unique_ptr<cluster::Bucket> registry_;
  struct Registration {
    uint64_t seq = 0;     // of this node's latest put for the client
    bool echoed = false;  // the watch has shown it: in the bucket's order
  };
  std::unordered_map<std::string, Registration, KeyedHash, std::equal_to<>> registered_;  // by client id
  // Clients whose latest registration is another node's.
  std::unordered_map<std::string, Owner, KeyedHash, std::equal_to<>> owners_;
  std::string own_token_;
  std::string move_subject_;
  __natsSubscription* move_sub_ = nullptr;
  std::function<void(std::string_view)> on_move_;
  std::string unanswered_prefix_;  // "<move subject>.n."
  __natsSubscription* unanswered_sub_ = nullptr;
  std::function<void(uint64_t)> on_unanswered_;
  std::unordered_map<std::string, int64_t> unanswered_;  // node token -> wall time NATS found none listening
  std::unordered_map<std::string, int64_t> byes_;        // node token -> wall time of its last bye
  int64_t linked_ms_ = 0;  // wall time the link to NATS last came up
  struct StandIn {
    uint32_t tag = 0;
    std::unique_ptr<cluster::Stream> stream;
  };
  std::unordered_map<std::string, StandIn> stand_ins_;  // by node token
  std::vector<cluster::Stream::In> stand_in_in_;
  std::function<void(Counters&)> move_counters_;
  uint64_t stream_settled_seen_ = 0;
  std::string registry_body_;
  std::string retained_body_;
  // Topics whose latest retained message from this node is not yet back
  // from the bucket's watch: the sequence number it went with.
  std::unordered_map<std::string, uint64_t, KeyedHash, std::equal_to<>> own_pending_;
  // QoS 1 and 2 between nodes (stream.h).
  std::unique_ptr<cluster::Stream> stream_;
  std::unordered_map<uint64_t, std::string> names_;  // node id -> its name's token
  struct Dest {
    const std::string* name;
    uint64_t id;
  };
  std::vector<Dest> dests_;  // forwardStored()'s
  AckGatePtr* collecting_ = nullptr;
  std::function<void()> on_stored_;
  uint64_t next_token_ = 0;
  // Copies for one run of another node, gathered in a loop turn: one
  // stream message (wire.h's batch entries), and the gates of the PUBACKs
  // that wait for it.
  struct OutBatch {
    std::string body;
    std::vector<AckGatePtr> gates;
    uint32_t copies = 0;
  };
  struct Awaiting {
    std::vector<AckGatePtr> gates;
    uint32_t copies = 0;
    bool group = false;  // a share group's copy (toGroup())
    // A message a group here gave to the cluster (giveToGroup()): its
    // store entry goes once the stream has it.
    MessagePtr given;
    std::string owner;
    uint64_t given_seq = 0;
  };
  uint64_t waiting_copies_ = 0;  // gathered or published, not yet stored
  static constexpr size_t kBatchBytes = 64 * 1024;
  std::unordered_map<std::string, OutBatch> batches_;  // by subject
  void sendBatch(const std::string& subject, OutBatch& b);
  void sendBatches();
  std::unordered_map<uint64_t, Awaiting> awaiting_;  // by token
  // A group's copy into the groups' stream; `a` what waits for its answer.
  void publishGroupCopy(SharedGroup& g, const Message& m, std::string msg_id, Awaiting a);
  std::vector<cluster::Stream::In> stream_in_;
  std::vector<cluster::Stream::Done> stream_done_;
  // Copies taken and routed, acknowledged to the stream once their batch
  // has committed and the share groups' copies their routing made are
  // stored (`gate`).
  struct Unacked {
    uint64_t ticket;  // 0: nothing written
    uint64_t seq;     // in the stream
    __natsMsg* msg;
    AckGatePtr gate;
    cluster::Stream* from;  // the consumer it came from
  };
  std::vector<Unacked> unacked_;
  uint64_t committed_ = 0;  // the store's last commit seen
  // Share groups across the cluster.
  std::unique_ptr<cluster::GroupStream> groups_js_;
  std::unique_ptr<cluster::StoreReplicaStream> replica_;
  bool replica_guard_ = false;
  std::unordered_map<uint64_t, SharedGroup*> local_groups_;  // by group id
  std::unordered_map<uint64_t, cluster::GroupStream::Taken> held_;  // by Message::group_token
  uint64_t next_group_token_ = 0;
  // Another node gained a filter since the groups last gave what they
  // hold (at most once a second; the group timer, every third of the
  // groups' ack wait, looks too).
  bool gained_interest_ = false;
  uint64_t last_hand_back_ms_ = 0;
  std::vector<cluster::GroupStream::In> group_in_;
  std::string group_body_;
  std::string wire_;
  uv_timer_t group_progress_;
  bool group_progress_open_ = false;
  // Stream messages taken and not routed yet (waitsForControl()), in order.
  struct WaitingIn {
    cluster::Stream::In in;
    int64_t since_ms;
  };
  std::deque<WaitingIn> waiting_in_;
  uv_timer_t control_wait_;
  bool control_wait_open_ = false;
  uint64_t control_index_ = 0;  // of this node's control messages
  std::unordered_map<uint64_t, uint64_t> last_control_;  // by node id: the index of its last one here
  // While a watch delivers the bucket's values: the topics it had.
  bool syncing_ = false;
  std::unordered_set<std::string, KeyedHash, std::equal_to<>> synced_;
};

}  // namespace petrel
