// src/acks/ack_gate.h — "this PUBACK may go before its commit once these
// receivers have acknowledged".
//
// The publisher's PUBACK of a QoS 1 message normally waits for the commit
// that stores it (acknowledged means stored). When every durable receiver
// got the message at once, the stored copy only matters until they have
// all acknowledged it: after that nothing is owed, so the PUBACK may go
// even if the commit has not completed. The router creates one gate per
// such message, counts each receiver in it, and each receiver's
// acknowledgement counts one out. A gate that never opens (a receiver went
// away) costs nothing: the commit releases the PUBACK anyway.
#pragma once

#include <cstdint>
#include <memory>

namespace petrel {

class AckGate {
 public:
  // A receiver that got the message at once; the gate waits for its ack.
  void addReceiver() { ++pending_; }
  // That receiver acknowledged. True when this opened the gate.
  bool receiverDone() { return pending_ != 0 && --pending_ == 0; }
  bool open() const { return pending_ == 0; }
  uint32_t pending() const { return pending_; }

 private:
  uint32_t pending_ = 0;
};

using AckGatePtr = std::shared_ptr<AckGate>;

}  // namespace petrel
