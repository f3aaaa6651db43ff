// fuzz_decoder: the receive path of a connection. The first byte picks the
// protocol level (3.1, 3.1.1 or 5), the maximum packet size and a chunking
// seed; the rest is a byte stream from a client.
//
// Checks:
//  - peekFrame over the whole stream, as Connection::processShared does, and
//    every complete frame parsed as the broker would (mqtt::parseConnect,
//    mqtt::parse for each packet type, mqtt::parseEmpty);
//  - a packet that parses is re-encoded, parsed again and re-encoded: the two
//    encodings must be identical;
//  - the same bytes fed in random-sized chunks through StreamDecoder
//    (writeSpace/commit/next/compact) must yield exactly the same frames and
//    the same final status.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mqtt/decoder.h"
#include "mqtt/encoder.h"

using namespace petrel::mqtt;

namespace {

// Re-parses `wire` (one encoded packet) into T and re-encodes it.
template <typename T, typename Enc>
void reencode(const std::string& wire, Version v, Enc enc) {
  Frame f;
  const auto* d = reinterpret_cast<const uint8_t*>(wire.data());
  if (peekFrame(d, wire.size(), kMaxPacketSize, f) != FrameStatus::Ok || f.total_len != wire.size())
    abort();
  T again;
  Reason rc;
  if constexpr (std::is_same_v<T, Connect>) rc = parseConnect(f, again);
  else rc = parse(f, v, again);
  if (rc != Reason::Success) abort();
  std::string wire2;
  enc(again, wire2);
  if (wire2 != wire) abort();
}

template <typename T>
void parseAndCheck(const Frame& f, Version v) {
  T p;
  if (parse(f, v, p) != Reason::Success) return;
  std::string wire;
  if constexpr (std::is_same_v<T, Auth>) {
    encode(p, wire);
    reencode<T>(wire, v, [](const T& x, std::string& o) { encode(x, o); });
  } else {
    encode(p, v, wire);
    reencode<T>(wire, v, [v](const T& x, std::string& o) { encode(x, v, o); });
  }
}

void parseFrame(const Frame& f, Version v) {
  switch (f.type) {
    case PacketType::Connect: {
      Connect c;
      if (parseConnect(f, c) == Reason::Success) {
        std::string wire;
        encode(c, wire);
        reencode<Connect>(wire, c.version, [](const Connect& x, std::string& o) { encode(x, o); });
      }
      break;
    }
    case PacketType::Connack: parseAndCheck<Connack>(f, v); break;
    case PacketType::Publish: parseAndCheck<Publish>(f, v); break;
    case PacketType::Puback:
    case PacketType::Pubrec:
    case PacketType::Pubrel:
    case PacketType::Pubcomp: parseAndCheck<Ack>(f, v); break;
    case PacketType::Subscribe: parseAndCheck<Subscribe>(f, v); break;
    case PacketType::Suback: parseAndCheck<Suback>(f, v); break;
    case PacketType::Unsubscribe: parseAndCheck<Unsubscribe>(f, v); break;
    case PacketType::Unsuback: parseAndCheck<Unsuback>(f, v); break;
    case PacketType::Disconnect: parseAndCheck<Disconnect>(f, v); break;
    case PacketType::Auth: parseAndCheck<Auth>(f, v); break;
    case PacketType::Pingreq:
    case PacketType::Pingresp:
    case PacketType::Reserved: (void)parseEmpty(f); break;
  }
}

struct Seen {
  size_t offset;  // of the frame in the stream
  uint32_t total_len;
  uint8_t first;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t ctl = data[0];
  static constexpr Version kVersions[] = {Version::V31, Version::V311, Version::V5, Version::V5};
  static constexpr uint32_t kMax[] = {1048576, 65536, 256, 16};
  const Version v = kVersions[ctl & 3];
  const uint32_t max_packet = kMax[(ctl >> 2) & 3];
  const uint8_t* s = data + 1;
  const size_t n = size - 1;

  // 1. The whole stream at once.
  std::vector<Seen> frames;
  size_t pos = 0;
  FrameStatus st = FrameStatus::Incomplete;
  while (pos < n) {
    Frame f;
    st = peekFrame(s + pos, n - pos, max_packet, f);
    if (st != FrameStatus::Ok) break;
    if (f.total_len == 0 || f.total_len > n - pos || f.body != s + pos + (f.total_len - f.body_len))
      abort();
    frames.push_back({pos, f.total_len, s[pos]});
    parseFrame(f, v);
    pos += f.total_len;
  }
  if (pos == n) st = FrameStatus::Incomplete;

  // 2. The same stream in chunks through the StreamDecoder.
  StreamDecoder dec(max_packet);
  uint32_t rng = 0x9E3779B9u ^ (uint32_t(ctl) << 8) ^ uint32_t(size);
  auto rand = [&rng] {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    return rng;
  };
  size_t fed = 0, next_frame = 0;
  FrameStatus st2 = FrameStatus::Incomplete;
  while (fed < n && st2 == FrameStatus::Incomplete) {
    size_t chunk = 1 + rand() % ((ctl >> 4) == 0 ? 1 : (ctl >> 4) * 37u);
    if (chunk > n - fed) chunk = n - fed;
    size_t avail = 0;
    uint8_t* p = dec.writeSpace(chunk, avail);
    if (avail < chunk) abort();
    std::memcpy(p, s + fed, chunk);
    dec.commit(chunk);
    fed += chunk;
    for (;;) {
      Frame f;
      st2 = dec.next(f);
      if (st2 != FrameStatus::Ok) break;
      if (next_frame >= frames.size()) abort();
      const Seen& e = frames[next_frame++];
      if (f.total_len != e.total_len || (uint8_t(f.type) << 4 | f.flags) != e.first) abort();
      const size_t hdr = f.total_len - f.body_len;
      if (f.body_len && std::memcmp(f.body, s + e.offset + hdr, f.body_len) != 0) abort();
    }
    if (rand() % 4 == 0) dec.compact();
  }
  if (next_frame != frames.size() || st2 != st) abort();
  return 0;
}
