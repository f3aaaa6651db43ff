#include "src/sessions/session.h"

namespace petrel {

uint16_t Session::nextPacketId() {
  // The window is at most 65535 wide, so a free id always exists; the search
  // is short because ids are handed out in order and acked mostly in order.
  do {
    last_packet_id_ = static_cast<uint16_t>(last_packet_id_ + 1);
    if (last_packet_id_ == 0) last_packet_id_ = 1;
  } while (packetIdInUse(last_packet_id_));
  return last_packet_id_;
}

bool Session::packetIdInUse(uint16_t id) const { return inflight.contains(id); }

InflightOut* Session::findInflight(uint16_t id) { return inflight.find(id); }

void Session::eraseInflight(uint16_t id) { inflight.erase(id); }

}  // namespace petrel
