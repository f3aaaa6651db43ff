// fuzz_websocket: petrel::WebSocketStream (server side) on arbitrary input.
//
// Input: one flags byte, then the bytes a client sends. Flags bit 0 set:
// the bytes start with the HTTP request head; clear: the harness upgrades
// first with a valid head and the bytes are frames. Bits 1..7: the input is
// cut into reads of 1 + (flags >> 1) bytes.
//
// Checks: nothing crashes; the same bytes fed in reads through the buffer
// the layer hands out (unmasked in place, as on TCP) and fed at once from a
// buffer of the stream below (through the scratch buffer, as on TLS) give
// the same payload, the same end and the same output; no more payload
// comes out than went in; the output is an HTTP answer followed by well-
// formed server frames (unmasked, final), the last a close frame when
// input ended after an upgrade.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "src/transport/websocket_stream.h"

namespace {

using petrel::Stream;
using petrel::StreamEnd;
using petrel::StreamHandler;
using petrel::WebSocketConfig;
using petrel::WebSocketStream;
namespace ws = petrel::ws;

const std::string kUpgrade =
    "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: mqtt\r\n\r\n";

class Below final : public Stream {
 public:
  Write write(std::string& data) override {
    if (data.empty()) return Write::Nothing;
    wire += data;
    data.clear();
    return Write::Written;
  }
  bool writing() const override { return false; }
  size_t pendingBytes() const override { return 0; }
  void windDown() override {}
  bool shutdown() override { return true; }
  void close() override {}
  std::string peer() const override { return "fuzz:1"; }

  bool feed(const uint8_t* p, size_t n) {
    size_t len = 0;
    uint8_t* b = handler_->readBuffer(len, false);
    if (len < n) abort();
    std::memcpy(b, p, n);
    return handler_->onStreamData(b, n);
  }
  bool feedOwn(const uint8_t* p, size_t n) { return handler_->onStreamData(p, n); }

  std::string wire;
};

class Top final : public StreamHandler {
 public:
  uint8_t* readBuffer(size_t& len, bool) override {
    len = sizeof buf;
    return buf;
  }
  bool onStreamData(const uint8_t* data, size_t len) override {
    received.append(reinterpret_cast<const char*>(data), len);
    return true;
  }
  void onStreamWritable(bool) override {}
  void onStreamEnd(StreamEnd why) override {
    ended = true;
    failed = why == StreamEnd::Failed;
  }
  void onStreamClosed() override {}

  uint8_t buf[8192];
  std::string received;
  bool ended = false, failed = false;
};

struct Run {
  Below below;
  WebSocketStream layer;
  Top top;
  explicit Run(const WebSocketConfig& cfg) : layer(below, cfg) { layer.setHandler(&top); }
  // What the owner does at the end: wind down after an end, flush.
  void finish() {
    if (top.ended) layer.windDown();
    std::string none;
    layer.write(none);
  }
};

void checkOutput(const Run& r) {
  const std::string& w = r.below.wire;
  if (w.empty()) {
    if (r.top.ended) abort();  // an end always says why first
    return;
  }
  if (w.compare(0, 9, "HTTP/1.1 ") != 0) abort();
  const size_t head = w.find("\r\n\r\n");
  if (head == std::string::npos) abort();
  const bool upgraded = w.compare(9, 3, "101") == 0;
  if (upgraded != r.layer.handshakeDone()) abort();
  size_t pos = head + 4;
  if (!upgraded) {
    // The refusal's body: Content-Length bytes, then nothing.
    if (!r.top.ended) abort();
    return;
  }
  int last = -1;
  while (pos < w.size()) {
    const auto* p = reinterpret_cast<const uint8_t*>(w.data()) + pos;
    const size_t hs = ws::headerSize(p, w.size() - pos);
    if (!hs || hs > w.size() - pos) abort();
    ws::FrameHeader h;
    ws::parseHeader(p, h);
    if (h.masked || !h.fin || h.rsv || w.size() - pos - hs < h.length) abort();
    if (h.opcode != ws::kPong && h.opcode != ws::kClose) abort();  // no data was written
    if (last == ws::kClose) abort();                                // nothing after the close
    last = h.opcode;
    pos += hs + h.length;
  }
  if (r.top.ended && r.top.failed && last != ws::kClose) abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t flags = data[0];
  std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (!(flags & 1)) input.insert(0, kUpgrade);
  const size_t chunk = 1 + (flags >> 1);
  WebSocketConfig cfg;
  cfg.max_frame_size = 1024;
  cfg.max_header_bytes = 1024;

  Run a(cfg), b(cfg);
  const auto* in = reinterpret_cast<const uint8_t*>(input.data());
  for (size_t pos = 0; pos < input.size() && !a.top.ended; pos += chunk)
    a.below.feed(in + pos, std::min(chunk, input.size() - pos));
  b.below.feedOwn(in, input.size());
  a.finish();
  b.finish();

  if (a.top.received != b.top.received) abort();
  if (a.top.ended != b.top.ended || a.top.failed != b.top.failed) abort();
  if (a.below.wire != b.below.wire) abort();
  if (a.top.received.size() > input.size()) abort();
  checkOutput(a);
  return 0;
}
