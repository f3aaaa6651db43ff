// mqtt/decoder.h — incremental framing and parsing of received packets.
//
// StreamDecoder owns the receive buffer of one connection: the socket reads
// straight into its free tail (writeSpace/commit), and next() hands out whole
// packets as views into that buffer, so one read can yield many packets and a
// packet can arrive over many reads. The Maximum Packet Size is enforced from
// the fixed header, before the body is buffered.
//
// parse() turns a frame into a packet struct for a given protocol level and
// reports the reason code of anything malformed (§4.13: the connection is then
// closed, with DISCONNECT or CONNACK first for MQTT 5).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "mqtt/packets.h"

namespace petrel::mqtt {

struct Frame {
  PacketType type = PacketType::Reserved;
  uint8_t flags = 0;          // low nibble of the first byte
  const uint8_t* body = nullptr;  // the variable header and payload
  uint32_t body_len = 0;
  uint32_t total_len = 0;     // fixed header included
};

enum class FrameStatus {
  Incomplete,   // need more bytes
  Ok,           // a frame is ready
  Malformed,    // Remaining Length longer than 4 bytes
  TooLarge,     // the packet exceeds the maximum packet size
};

// Reads a fixed header from data[0..len). On Ok, fills `f` (its body points
// into data). On TooLarge, `f.total_len` holds the announced size.
FrameStatus peekFrame(const uint8_t* data, size_t len, uint32_t max_packet_size,
                      Frame& f);

class StreamDecoder {
 public:
  explicit StreamDecoder(uint32_t max_packet_size = kMaxPacketSize)
      : max_packet_size_(max_packet_size) {}

  void setMaxPacketSize(uint32_t n) { max_packet_size_ = n; }

  // Space to read into: at least `min` bytes, more when a large packet is
  // known to be coming.
  uint8_t* writeSpace(size_t min, size_t& avail);
  void commit(size_t n) { end_ += n; }

  // The next complete packet, if any. The frame stays valid until the next
  // call to writeSpace() or compact().
  FrameStatus next(Frame& f);

  // Moves unconsumed bytes to the front and releases an oversized buffer.
  void compact();

  size_t buffered() const { return end_ - start_; }
  // Bytes the packet in progress still needs before next() can return it,
  // as far as the last next() could tell: the rest of its known length, or
  // 1 while its length field is incomplete.
  size_t missing() const { return want_ > buffered() ? want_ - buffered() : 1; }

 private:
  std::vector<uint8_t> buf_;
  size_t start_ = 0;
  size_t end_ = 0;
  size_t want_ = 0;  // total length of a packet known to be in progress
  uint32_t max_packet_size_;
};

Reason parseConnect(const Frame& f, Connect& out);
// `version` selects the wire format; MQTT 3.1 and 3.1.1 share one.
Reason parse(const Frame& f, Version version, Connack& out);
Reason parse(const Frame& f, Version version, Publish& out);
Reason parse(const Frame& f, Version version, Ack& out);
Reason parse(const Frame& f, Version version, Subscribe& out);
Reason parse(const Frame& f, Version version, Suback& out);
Reason parse(const Frame& f, Version version, Unsubscribe& out);
Reason parse(const Frame& f, Version version, Unsuback& out);
Reason parse(const Frame& f, Version version, Disconnect& out);
Reason parse(const Frame& f, Version version, Auth& out);
// PINGREQ and PINGRESP: only the flags and the empty body are checked.
Reason parseEmpty(const Frame& f);

}  // namespace petrel::mqtt
