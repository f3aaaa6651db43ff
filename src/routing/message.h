// src/routing/message.h — an application message as the broker holds it: stored
// once, immutable, shared by reference between every session queue, the
// retained store and in-flight windows that hold it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mqtt/properties.h"
#include "src/util/block_pool.h"
#include "src/util/spare_list.h"

namespace petrel {

struct Message {
  std::string topic;
  std::string payload;
  uint8_t qos = 0;
  bool retain = false;
  // Properties forwarded to subscribers (§3.3.2.3): payload format, content
  // type, response topic, correlation data, user properties. Topic Alias,
  // Subscription Identifiers and the expiry interval are per delivery.
  // Null when there are none (every MQTT 3.1.1 message, most MQTT 5 ones):
  // a Properties object is several hundred bytes.
  std::shared_ptr<const mqtt::Properties> props;
  // Wall-clock deadline in milliseconds since the epoch, 0 = never expires
  // (§3.3.2.3.3 Message Expiry Interval).
  int64_t expires_at_ms = 0;
  // Client id of the publisher, for No Local (§3.8.3.1).
  std::string origin;
  // Came in over a bridge (ours, or another broker's connecting to us):
  // never forwarded by a bridge again (loop prevention, bridges/).
  bool from_bridge = false;
  // Came from another node of the cluster: not sent to the others again
  // (src/cluster/).
  bool from_cluster = false;
  // Owed only to the durable sessions that wanted it: it waited in the
  // cluster's stream while this node was down or restarting, and sessions
  // made since (every clean one) came after it.
  bool durable_only = false;
  // Taken from the cluster's stream on behalf of a node that is down, whose
  // sessions this node took (src/cluster/adoption.h): owed only to those
  // sessions (Session::adopted_from alike); 0 otherwise.
  uint32_t adopted_from = 0;
  // Its identity in the cluster: the id of the node it was published on and
  // that node's sequence number for it, once it has gone to (or come from)
  // another node; 0 otherwise. A session moving between nodes uses it to
  // tell a message it got twice (src/cluster/session_moves.h).
  uint64_t cluster_node = 0;
  uint64_t cluster_seq = 0;
  // Taken from a cluster-wide share group's stream (src/cluster/
  // group_stream.h): the node's handle to acknowledge it there; 0 otherwise.
  uint64_t group_token = 0;
  // Id in the persistent store (assigned to every message when persistence
  // is on; the record is written only when a durable holder exists).
  uint64_t id = 0;

  // Back to the state of a new message, keeping the strings' buffers
  // (MessageRecycler). Every field above is named here: a field added above
  // must be added here too (the unit test
  // BlockPool.DroppedMessagesAreHandedOutAgainEmpty stops the build until
  // it is).
  void resetKeepingBuffers() noexcept {
    topic.clear();
    payload.clear();
    origin.clear();
    qos = 0;
    retain = false;
    props.reset();
    expires_at_ms = 0;
    from_bridge = false;
    from_cluster = false;
    durable_only = false;
    adopted_from = 0;
    cluster_node = 0;
    cluster_seq = 0;
    group_token = 0;
    id = 0;
  }
};

using MessagePtr = std::shared_ptr<const Message>;

// Messages are made and dropped once per PUBLISH, and acknowledgements drop
// them in bursts, which sends malloc down its slow path. So a dropped
// message is kept (per thread, up to kKeep) and handed out again, with its
// strings' buffers (each up to kKeepPayload bytes): the next PUBLISH is
// parsed into them. Its reference count comes from a pool of blocks. A weak
// reference to a recycled message has expired, as with any other.
class MessageRecycler {
 public:
  static constexpr size_t kKeep = 1024;
  static constexpr size_t kKeepPayload = 1024;

  static Message* take() {
    std::unique_ptr<Message> m = Spares::take();
    return m ? m.release() : new Message();
  }
  // The shared_ptr's deleter.
  void operator()(Message* m) const noexcept {
    if (!Spares::room()) {
      delete m;
      return;
    }
    // A string's own buffer is kept up to kKeepPayload bytes; the topic and
    // the publisher's id keep theirs too, so the next PUBLISH parsed into
    // the message allocates nothing for them either.
    m->resetKeepingBuffers();
    if (m->payload.capacity() > kKeepPayload) std::string().swap(m->payload);
    if (m->topic.capacity() > kKeepPayload) std::string().swap(m->topic);
    if (m->origin.capacity() > kKeepPayload) std::string().swap(m->origin);
    Spares::give(std::unique_ptr<Message>(m));
  }

 private:
  using Spares = SpareList<Message, kKeep>;
};

// A new, empty message (see MessageRecycler); its payload may have capacity.
inline std::shared_ptr<Message> makeMessage() {
  return std::shared_ptr<Message>(MessageRecycler::take(), MessageRecycler{}, PoolAllocator<Message>());
}

}  // namespace petrel
