#include "src/sessions/session.h"

#include "src/util/check.h"

namespace petrel {

uint16_t Session::nextFreePacketId() {
  // Callers ask only while the window (at most 65,535 wide) has room, so a
  // free id exists; the search is short because ids are handed out in
  // order and acked mostly in order.
  uint32_t tries = 0;
  do {
    last_packet_id_ = static_cast<uint16_t>(last_packet_id_ + 1);
    if (last_packet_id_ == 0) last_packet_id_ = 1;
    PETREL_CHECK(++tries <= 65535);  // every id in flight: a caller broke the rule
  } while (packetIdInUse(last_packet_id_));
  return last_packet_id_;
}

}  // namespace petrel
