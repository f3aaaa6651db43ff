// src/cluster/group_stream.h — share groups across the cluster: the
// JetStream side.
//
// A share group `$share/<group>/<filter>` with members on several nodes
// gives each message to one member in the whole cluster. Its messages wait
// in the JetStream work queue "<name>_groups", on the group's subject
// "<name>.g.<group id>" (groupId(): the same on every node), read through
// one durable consumer per group that every node with members of the group
// binds to: JetStream hands each message to one of them. Every node that
// has the group and routes a message publishes the group's copy, under an
// id made of the message's cluster identity and the group (groupMsgId()),
// so that JetStream keeps one (its duplicate window, 2 minutes).
//
// A node takes a group's messages only while it has members of the group
// online with room (setCredit(): how many it may take now), hands them to
// its members, and acknowledges each to JetStream once its member has
// (PUBACK, PUBCOMP; at once for QoS 0). A message whose member left without
// acknowledging it, when no other member of the group is online on the
// node, goes back to JetStream at once (nak()) for a member elsewhere; one
// held by a node that was killed comes again after the consumer's ack wait
// (cluster.group_ack_wait, 30 s). While held it is kept from that wait
// (inProgress()).
//
// One fetching thread per group (JetStream calls block; the loop never
// waits for them). The copies themselves are published by Stream's
// publisher (Stream::Out::msg_id), which also creates this stream.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

struct __natsConnection;
struct __natsSubscription;
struct __jsCtx;
struct __natsMsg;
struct natsMsgList;

namespace petrel::cluster {

// A share group's id in the cluster (FNV-1a, 64 bits, of the share name and
// the filter): its subject's last token and its consumer's name.
uint64_t groupId(std::string_view share_name, std::string_view filter);
// "<name>.g.<id as 16 hex digits>".
std::string groupSubject(std::string_view cluster_name, uint64_t gid);
// JetStream's message id of the group's copy of a message: its cluster
// identity (the node it was published on and that node's number for it)
// and the group.
std::string groupMsgId(uint64_t node, uint64_t seq, uint64_t gid);

class GroupStream {
 public:
  // A message taken from a group's consumer. It is acknowledged through
  // the subscription it came by, which stays open while the message is
  // held: after its group left this node, or its consumer was opened
  // again, the loop may still hold what came before.
  struct Taken {
    __natsMsg* msg = nullptr;
    std::shared_ptr<__natsSubscription> sub;
  };
  // A stream message of a group, for this node's members.
  struct In {
    uint64_t gid = 0;
    std::string body;
    uint64_t delivered = 1;  // 2 and more: it was with a member before
    Taken taken;
  };

  // `stream` is "<name>_groups", `cluster_name` "<name>"; `ack_wait_ms`
  // is the consumers' ack wait (cluster.group_ack_wait). `wake` is called
  // on the fetching threads when something waits for take().
  GroupStream(__natsConnection* nc, std::string stream, std::string cluster_name, int64_t ack_wait_ms,
              std::function<void()> wake);
  ~GroupStream();
  GroupStream(const GroupStream&) = delete;
  GroupStream& operator=(const GroupStream&) = delete;

  // The loop's side. A group of this node: its consumer is made (or
  // bound to) and read while it has credit.
  void add(uint64_t gid, const std::string& share_name, const std::string& filter);
  // The group is gone from this node: its thread ends.
  void remove(uint64_t gid);
  // How many more of the group's messages this node may take now (what
  // it took and the loop has not seen yet counts against it).
  void setCredit(uint64_t gid, int credit);
  void take(std::vector<In>& in);
  // Done with: acknowledged to JetStream (the member has it, or it was
  // dropped for good); back to JetStream for another node (`t` is empty
  // after either); still held.
  void ack(Taken& t);
  void nak(Taken& t);
  void inProgress(const Taken& t);
  // Given back to JetStream by the fetching threads themselves: what came
  // for a group as it left this node.
  uint64_t returned() const { return returned_.load(); }
  // Ends every thread; what was taken and not acknowledged comes again
  // (to another node) after the ack wait.
  void stop();
  size_t groups() const;

 private:
  struct Group {
    uint64_t gid = 0;
    std::string durable;   // the consumer's name
    std::string subject;
    std::string description;
    std::atomic<int> credit{0};
    std::atomic<int> in_transit{0};  // taken, not yet handed to the loop
    std::atomic<bool> stopping{false};
    std::atomic<bool> finished{false};
    std::thread thread;
  };
  using Sub = std::shared_ptr<__natsSubscription>;
  void run(Group& g);
  // The messages of a fetch on `sub` (`asked` for), to the loop.
  void handOver(Group& g, const Sub& sub, natsMsgList& list, int asked);
  // What waits in the subscription, to the loop; or, as the group's
  // thread ends, back to JetStream (`give_back`). Whether anything waited.
  bool takeLeftovers(Group& g, const Sub& sub, bool give_back);
  bool open(Group& g, Sub& sub);
  void pause(int ms, const Group& g);
  void reap();

  __natsConnection* nc_;
  const std::string stream_;
  const std::string cluster_name_;
  const int64_t ack_wait_ms_;
  std::function<void()> wake_;
  __jsCtx* js_ = nullptr;
  std::mutex js_mu_;  // js_ being made
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, std::unique_ptr<Group>> groups_;  // the loop's
  std::vector<std::unique_ptr<Group>> retired_;                  // threads ending
  std::vector<In> in_;
  bool stopped_ = false;
  std::atomic<uint64_t> returned_{0};
};

}  // namespace petrel::cluster
