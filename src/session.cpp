#include "src/session.h"

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

bool Session::packetIdInUse(uint16_t id) const {
  if (inflight.empty()) return false;
  // Ids are assigned in increasing order (mod 2^16), so the window is a
  // contiguous range unless acks came back out of order.
  for (const auto& f : inflight)
    if (f.packet_id == id) return true;
  return false;
}

InflightOut* Session::findInflight(uint16_t id) {
  for (auto& f : inflight)
    if (f.packet_id == id) return &f;
  return nullptr;
}

void Session::eraseInflight(uint16_t id) {
  if (!inflight.empty() && inflight.front().packet_id == id) {
    inflight.pop_front();
    return;
  }
  for (auto it = inflight.begin(); it != inflight.end(); ++it) {
    if (it->packet_id == id) {
      inflight.erase(it);
      return;
    }
  }
}

}  // namespace petrel
