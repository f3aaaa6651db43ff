// src/cluster/stream.h — QoS 1 and 2 between nodes: a JetStream stream that
// keeps each message until the node it is for has stored it.
//
// Core NATS stores nothing: what is in transit while a node's link is down
// is lost. So a QoS 1 or 2 message that another node wants goes through
// JetStream instead: one copy per node that wants it, on the subject
// "<name>.q.<node>.<run id>.<control count>" of the stream "<name>_messages" (a work queue:
// a message leaves it when its node has acknowledged it). The
// publisher's PUBACK (PUBREC) waits until JetStream has stored every copy
// (on `replicas` servers), so what a node acknowledged does not live only
// on its disk. Each node reads its own subject through a durable consumer
// named after it, and acknowledges a message to JetStream once it has
// stored it (the commit of the batch its routing wrote), or at once when no
// durable receiver of this node wanted it. A node that is down, restarting
// or killed finds what was sent to it while it was away, and what it had
// taken but not yet stored comes again.
//
// The copies for one node gathered in a loop turn travel as one stream
// message (Cluster's batches, wire.h's batch entries): JetStream stores and
// answers a batch at a time.
//
// This class is the JetStream side, on two threads of its own (JetStream
// calls block; the loop never waits for them): one publishes what the loop
// asks, pipelined (thousands awaiting JetStream's answer at once), and tries
// again what was refused for a passing reason (JetStream's duplicate window
// drops a stream message stored twice); the other fetches this node's, at
// most kWindow stream messages and `max_pending_bytes` taken and not yet
// acknowledged (the rest wait in the stream).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

struct __natsConnection;
struct __natsSubscription;
struct __jsCtx;
struct __natsMsg;
struct jsPubAck;
struct jsPubAckErr;

namespace petrel::cluster {

class Stream {
 public:
  // Stream messages taken and not yet acknowledged, at most (the
  // consumer's MaxAckPending too); their bytes are bounded as well.
  static constexpr int kWindow = 4096;

  // A stream message for another node: `token` comes back in done() once
  // stored.
  struct Out {
    std::string subject;
    std::string body;
    uint64_t token = 0;
    // JetStream's message id when the copy has one of its own (a share
    // group's copy: the same from every node that publishes it, so that
    // the stream keeps one); empty: one made from this run and the token.
    std::string msg_id;
  };
  // A stream message for this node. `msg` is acknowledged (ack()) or let
  // go (release()) by the loop.
  struct In {
    std::string subject;
    std::string body;
    uint64_t stream_seq = 0;
    uint64_t delivered = 1;  // 2 and more: it came before (not acknowledged in time)
    __natsMsg* msg = nullptr;
  };
  struct Done {
    uint64_t token;
    bool stored;  // false: given up (too large; or refused while the stream stops)
    bool too_large = false;  // given up as larger than the NATS servers take
  };
  struct Counters {
    uint64_t retried = 0;  // stream messages tried again (no answer, no leader yet, refused for now)
    bool ready = false;    // the stream and this node's consumer are open
  };

  // `subject_prefix` is "<name>.q."; `node` this node's token. `wake` is
  // called on the stream's threads when something waits for take().
  Stream(__natsConnection* nc, std::string stream, std::string subject_prefix, std::string node, int replicas,
         uint64_t max_pending_bytes, std::function<void()> wake);
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Another stream opened (created if missing: a work queue over
  // `subjects`) along with this one, before start(): the share groups'
  // (group_stream.h), whose copies this publishes.
  void alsoOpen(std::string stream, std::string subjects, std::string description) {
    extra_.push_back({std::move(stream), std::move(subjects), std::move(description)});
  }

  // Before start(): the node's consumer is deleted and made again (the
  // node is dead: what it had taken comes at once; adoption.h).
  void renewConsumer() { renew_consumer_ = true; }
  void start();
  // Tries for about two seconds to have what waits stored, then ends the
  // threads. Copies taken and not acknowledged come again to the node's
  // next run.
  void stop();

  // Open now: the node's consumer is read.
  bool ready() const { return ready_.load(); }
  // Open once at least: the servers have JetStream. From then on, copies
  // for other nodes wait in this stream's queue while it is opened again
  // (a new leader, the link back), with their publishers' PUBACKs.
  bool opened() const { return opened_.load(); }
  // "<name>.q.<node>." of `node`.
  std::string nodePrefix(const std::string& node) const { return prefix_ + node + "."; }
  const std::string& ownPrefix() const { return own_prefix_; }

  // The loop's side.
  void publish(Out o);
  void take(std::vector<In>& in, std::vector<Done>& done);
  void ack(__natsMsg* m);
  void release(__natsMsg* m);
  Counters counters() const;
  // While watched: how often a fetch found nothing for this node and the
  // consumer then had nothing pending and no message out with an earlier
  // run of this node (killed: what it took comes again after the ack
  // wait). Read before take(): once it has grown by two since a moment,
  // everything the stream held for this node at that moment has been
  // taken.
  void watchSettled(bool on) { watch_settled_ = on; }
  uint64_t settledMarks() const { return settled_marks_.load(); }

 private:
  struct AckSink {
    std::mutex mu;
    Stream* stream = nullptr;  // null once stopped
  };
  static void onAck(__jsCtx* js, __natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure);

  bool open();
  void runPublish();
  void runFetch();
  void pause(int ms);
  // A stream message taken was acknowledged or let go.
  void settled(__natsMsg* m);

  __natsConnection* nc_;
  const std::string stream_;
  const std::string prefix_;
  const std::string node_;
  const std::string own_prefix_;
  const int replicas_;
  const uint64_t max_bytes_;
  std::function<void()> wake_;
  std::shared_ptr<AckSink> acks_;
  __jsCtx* js_ = nullptr;
  __natsSubscription* sub_ = nullptr;
  std::mutex open_mu_;  // js_, sub_ being made
  std::string last_error_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> opened_{false};
  bool renew_consumer_ = false;
  std::atomic<bool> watch_settled_{false};
  std::atomic<uint64_t> settled_marks_{0};
  void checkSettled();
  std::atomic<int> outstanding_{0};  // taken and not yet acknowledged or let go
  std::atomic<uint64_t> outstanding_bytes_{0};  // their bytes
  bool roomToTake() const { return outstanding_.load() < kWindow && outstanding_bytes_.load() < max_bytes_; }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Out> out_;
  // Copies published under an id of their own (Out::msg_id): their tokens.
  std::unordered_multimap<std::string, uint64_t> named_;
  struct Extra {
    std::string name, subjects, description;
  };
  std::vector<Extra> extra_;
  // Creates it (one that exists is used as it is); the NATS status, and
  // JetStream's error code in `jerr`.
  int addStream(const std::string& name, const std::string& subjects, const std::string& description, int& jerr);
  std::vector<In> in_;
  std::vector<Done> done_;
  Counters counters_;
  bool stopping_ = false;
  // JetStream refused copies it may take later (onAck): the publisher
  // waits a moment before sending them again; the refusal last logged.
  bool refused_ = false;
  std::string last_refusal_;
  // Under mu_: marks copies refused for now (`why`); true when `why` is not
  // the refusal last logged, so that each kind is logged once in a row.
  bool noteRefusal(const std::string& why);
  std::thread publisher_;
  std::thread fetcher_;
};

}  // namespace petrel::cluster
