// The WebSocket layer between a stream that delivers what the test feeds it
// (as TCP does, into the buffer the layer names, or as TLS does, from a
// buffer of its own) and a handler that records what comes up: the
// handshake in any number of parts, frames cut at every byte, fragments,
// pings, the close handshake, each broken frame with its close code, and
// the frames of the output.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "src/transport/websocket_stream.h"

namespace petrel {
namespace {

const std::string kUpgrade =
    "GET /mqtt HTTP/1.1\r\n"
    "Host: broker\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Protocol: mqtt\r\n"
    "\r\n";

// The stream below: takes every write unless told it is busy, and feeds
// bytes up the way TCP (`feed`) or TLS (`feedOwn`) does.
class Below final : public Stream {
 public:
  Write write(std::string& data) override {
    ++writes;
    if (busy) return Write::InFlight;
    if (data.empty()) return Write::Nothing;
    wire += data;
    data.clear();
    return Write::Written;
  }
  bool writing() const override { return busy; }
  size_t pendingBytes() const override { return 0; }
  void windDown() override { wound_down = true; }
  bool shutdown() override {
    shut = true;
    return true;
  }
  void close() override { closed = true; }
  std::string peer() const override { return "127.0.0.1:1"; }

  // Into the buffer the layer above names, as a socket read does.
  bool feed(const std::string& bytes) {
    size_t len = 0;
    uint8_t* b = handler_->readBuffer(len, false);
    EXPECT_GE(len, bytes.size());
    std::memcpy(b, bytes.data(), bytes.size());
    return handler_->onStreamData(b, bytes.size());
  }
  // From a buffer of the stream's own (TLS plaintext).
  bool feedOwn(const std::string& bytes) {
    own = bytes;
    return handler_->onStreamData(reinterpret_cast<const uint8_t*>(own.data()), own.size());
  }

  std::string wire;  // everything written
  std::string own;
  size_t writes = 0;
  bool busy = false, wound_down = false, shut = false, closed = false;
};

// The owner on top.
class Top final : public StreamHandler {
 public:
  uint8_t* readBuffer(size_t& len, bool transformed) override {
    EXPECT_TRUE(transformed);  // frames never land in decode space
    len = sizeof buf;
    return buf;
  }
  bool onStreamData(const uint8_t* data, size_t len) override {
    received.append(reinterpret_cast<const char*>(data), len);
    in_buf = in_buf && data >= buf && data + len <= buf + sizeof buf;
    ++pieces;
    return keep_reading;
  }
  void onStreamActivity() override { ++activity; }
  void onStreamOutput() override { ++output_wanted; }
  void onStreamWritable(bool) override {}
  void onStreamEnd(StreamEnd why) override {
    ended = true;
    end_why = why;
  }
  void onStreamClosed() override {}

  uint8_t buf[256 * 1024];
  std::string received;
  bool in_buf = true;
  bool keep_reading = true;
  size_t pieces = 0, activity = 0, output_wanted = 0;
  bool ended = false;
  StreamEnd end_why = StreamEnd::PeerClosed;
};

std::string clientFrame(uint8_t opcode, const std::string& payload, bool fin = true, bool masked = true,
                        uint8_t rsv = 0) {
  std::string f;
  f.push_back(static_cast<char>((fin ? 0x80 : 0) | rsv | opcode));
  const uint8_t m = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    f.push_back(static_cast<char>(m | payload.size()));
  } else if (payload.size() <= 0xFFFF) {
    f.push_back(static_cast<char>(m | 126));
    f.push_back(static_cast<char>(payload.size() >> 8));
    f.push_back(static_cast<char>(payload.size()));
  } else {
    f.push_back(static_cast<char>(m | 127));
    for (int s = 56; s >= 0; s -= 8) f.push_back(static_cast<char>(uint64_t(payload.size()) >> s));
  }
  const char key[4] = {'\x12', '\x34', '\x56', '\x78'};
  if (masked) f.append(key, 4);
  for (size_t i = 0; i < payload.size(); ++i) f.push_back(masked ? payload[i] ^ key[i % 4] : payload[i]);
  return f;
}

std::string closePayload(uint16_t code, const std::string& reason = "") {
  return std::string{static_cast<char>(code >> 8), static_cast<char>(code & 0xFF)} + reason;
}

// Server frames from the wire: (opcode, payload), checking each is unmasked
// and final; `rest` gets what does not form a whole frame.
std::vector<std::pair<int, std::string>> serverFrames(const std::string& wire, std::string* rest = nullptr) {
  std::vector<std::pair<int, std::string>> out;
  size_t pos = 0;
  while (pos < wire.size()) {
    const auto* p = reinterpret_cast<const uint8_t*>(wire.data()) + pos;
    const size_t avail = wire.size() - pos;
    const size_t hs = ws::headerSize(p, avail);
    if (!hs || hs > avail) break;
    ws::FrameHeader h;
    ws::parseHeader(p, h);
    if (avail < hs + h.length) break;
    EXPECT_FALSE(h.masked);
    EXPECT_TRUE(h.fin);
    out.emplace_back(h.opcode, wire.substr(pos + hs, h.length));
    pos += hs + h.length;
  }
  if (rest) *rest = wire.substr(pos);
  return out;
}

class WebSocketStreamTest : public ::testing::Test {
 protected:
  WebSocketStreamTest() : ws_(below_, cfg_) { ws_.setHandler(&top_); }

  // The owner's flush.
  Stream::Write flush(std::string data = {}) { return ws_.write(data); }
  void upgrade() {
    ASSERT_FALSE(ws_.handshakeDone());
    ASSERT_TRUE(below_.feed(kUpgrade));
    ASSERT_TRUE(ws_.handshakeDone());
    flush();
    ASSERT_EQ(below_.wire.rfind("HTTP/1.1 101 Switching Protocols\r\n", 0), 0u) << below_.wire;
    below_.wire.clear();
  }
  // What the owner does after onStreamEnd(Failed): wind down, flush.
  std::vector<std::pair<int, std::string>> closeAndFlush() {
    EXPECT_TRUE(top_.ended);
    EXPECT_EQ(top_.end_why, StreamEnd::Failed);
    ws_.windDown();
    EXPECT_TRUE(below_.wound_down);
    flush();
    return serverFrames(below_.wire);
  }
  void expectClosedWith(uint16_t code) {
    const auto frames = closeAndFlush();
    ASSERT_FALSE(frames.empty());
    EXPECT_EQ(frames.back().first, ws::kClose);
    ASSERT_GE(frames.back().second.size(), 2u);
    EXPECT_EQ(uint8_t(frames.back().second[0]) << 8 | uint8_t(frames.back().second[1]), code)
        << frames.back().second.substr(2);
    // Nothing more is read.
    EXPECT_FALSE(below_.feed(clientFrame(ws::kBinary, "late")));
  }

  WebSocketConfig cfg_ = [] {
    WebSocketConfig c;
    c.max_frame_size = 4096;
    c.max_header_bytes = 1024;
    return c;
  }();
  Below below_;
  WebSocketStream ws_;
  Top top_;
};

TEST_F(WebSocketStreamTest, UpgradeThenPayloadUnmaskedInPlaceAndFramesOut) {
  upgrade();
  EXPECT_GT(top_.output_wanted, 0u);  // the 101 asked to be written
  const std::string stream = clientFrame(ws::kBinary, "\x10\x0c" "first") + clientFrame(ws::kBinary, "second");
  ASSERT_TRUE(below_.feed(stream));
  EXPECT_EQ(top_.received, "\x10\x0c" "firstsecond");
  EXPECT_TRUE(top_.in_buf);     // handed up from the read buffer itself
  EXPECT_EQ(top_.pieces, 1u);   // both frames' payload in one piece
  // Output: one unmasked binary frame per flush.
  EXPECT_EQ(flush(std::string("\x20\x02\x00\x00", 4)), Stream::Write::Written);
  auto frames = serverFrames(below_.wire);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].first, ws::kBinary);
  EXPECT_EQ(frames[0].second, std::string("\x20\x02\x00\x00", 4));
  EXPECT_EQ(flush(), Stream::Write::Nothing);
}

TEST_F(WebSocketStreamTest, PayloadFromALayerBelowGoesThroughScratchInPieces) {
  std::string big(300 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 13 + i / 7);
  cfg_.max_frame_size = 1 << 20;
  WebSocketStream ws(below_, cfg_);  // a fresh layer with a larger limit
  Top top;
  ws.setHandler(&top);
  ASSERT_TRUE(below_.feedOwn(kUpgrade));
  ASSERT_TRUE(below_.feedOwn(clientFrame(ws::kBinary, big)));
  EXPECT_TRUE(top.received == big);
  EXPECT_FALSE(top.in_buf);
  EXPECT_GT(top.pieces, 1u);
}

TEST_F(WebSocketStreamTest, TheHeadInPartsAndAFrameRightBehindIt) {
  // Byte by byte, then the end of the head with a frame in the same read.
  const std::string frame = clientFrame(ws::kBinary, std::string("\xc0\x00", 2));
  for (size_t i = 0; i + 4 < kUpgrade.size(); ++i) {
    ASSERT_TRUE(below_.feed(kUpgrade.substr(i, 1)));
    EXPECT_FALSE(ws_.handshakeDone());
  }
  ASSERT_TRUE(below_.feed(kUpgrade.substr(kUpgrade.size() - 4) + frame));
  EXPECT_TRUE(ws_.handshakeDone());
  EXPECT_EQ(top_.received, std::string("\xc0\x00", 2));
  EXPECT_EQ(top_.activity, kUpgrade.size() - 3);
  // The 101 goes out before the first frame.
  flush(std::string("\xd0\x00", 2));
  std::string rest;
  const size_t head_end = below_.wire.find("\r\n\r\n");
  ASSERT_NE(head_end, std::string::npos);
  EXPECT_EQ(below_.wire.rfind("HTTP/1.1 101 ", 0), 0u);
  const auto frames = serverFrames(below_.wire.substr(head_end + 4), &rest);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].second, std::string("\xd0\x00", 2));
  EXPECT_EQ(rest, "");
}

TEST_F(WebSocketStreamTest, FramesCutAtEveryByteGiveTheSameStream) {
  const std::string payload_a(200, 'a'), payload_b = "bb", payload_c(70000, 'c');
  const std::string stream = clientFrame(ws::kBinary, payload_a, false) +        // first fragment
                             clientFrame(ws::kPing, "hi") +                      // between fragments
                             clientFrame(ws::kContinuation, "", false) +         // empty fragment
                             clientFrame(ws::kContinuation, payload_b, true) +   // last fragment
                             clientFrame(ws::kPong, "unsolicited") +
                             clientFrame(ws::kBinary, "") +                      // empty message
                             clientFrame(ws::kBinary, payload_c.substr(0, 3000));
  const std::string expected = payload_a + payload_b + payload_c.substr(0, 3000);
  for (size_t cut = 0; cut <= stream.size(); cut += (cut < 300 ? 1 : 97)) {
    Below below;
    WebSocketStream ws(below, cfg_);
    Top top;
    ws.setHandler(&top);
    ASSERT_TRUE(below.feed(kUpgrade));
    ASSERT_TRUE(below.feed(stream.substr(0, cut)));
    ASSERT_TRUE(below.feed(stream.substr(cut)));
    ASSERT_EQ(top.received, expected) << "cut at " << cut;
    ASSERT_FALSE(top.ended);
    std::string none;
    ws.write(none);
    const size_t head_end = below.wire.find("\r\n\r\n");
    const auto frames = serverFrames(below.wire.substr(head_end + 4));
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].first, ws::kPong);
    EXPECT_EQ(frames[0].second, "hi");
  }
  // And every byte on its own, through the scratch path.
  Below below;
  WebSocketStream ws(below, cfg_);
  Top top;
  ws.setHandler(&top);
  ASSERT_TRUE(below.feedOwn(kUpgrade));
  for (char ch : stream) ASSERT_TRUE(below.feedOwn(std::string(1, ch)));
  EXPECT_EQ(top.received, expected);
}

TEST_F(WebSocketStreamTest, OnlyTheLatestPingIsAnswered) {
  upgrade();
  ASSERT_TRUE(below_.feed(clientFrame(ws::kPing, "one") + clientFrame(ws::kPing, "two")));
  EXPECT_EQ(top_.received, "");
  EXPECT_GT(top_.activity, 0u);  // a sign of life nonetheless
  flush(std::string("\xd0\x00", 2));
  const auto frames = serverFrames(below_.wire);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0], std::make_pair(int(ws::kPong), std::string("two")));
  EXPECT_EQ(frames[1].first, ws::kBinary);
}

TEST_F(WebSocketStreamTest, TheClientsCloseIsAnsweredWithItsCodeAfterTheLastOutput) {
  upgrade();
  EXPECT_FALSE(below_.feed(clientFrame(ws::kBinary, "data") + clientFrame(ws::kClose, closePayload(1001, "bye")) +
                           clientFrame(ws::kBinary, "ignored")));
  EXPECT_EQ(top_.received, "data");
  ASSERT_TRUE(top_.ended);
  ws_.windDown();
  flush("last");
  const auto frames = serverFrames(below_.wire);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].second, "last");
  EXPECT_EQ(frames[1], std::make_pair(int(ws::kClose), closePayload(1001)));
  // Nothing goes after the close frame.
  below_.wire.clear();
  flush("more");
  EXPECT_EQ(below_.wire, "");
  EXPECT_TRUE(ws_.shutdown());
  EXPECT_TRUE(below_.shut);
}

TEST_F(WebSocketStreamTest, ACloseWithoutACodeIsAnsweredWithNormal) {
  upgrade();
  EXPECT_FALSE(below_.feed(clientFrame(ws::kClose, "")));
  const auto frames = closeAndFlush();
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0], std::make_pair(int(ws::kClose), closePayload(1000)));
}

TEST_F(WebSocketStreamTest, TheOwnersCloseSendsNormalClosure) {
  upgrade();
  ws_.windDown();
  flush(std::string("\xe0\x00", 2));  // the last packet, then the close frame in the same write
  EXPECT_EQ(below_.writes, 2u);
  const auto frames = serverFrames(below_.wire);
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].first, ws::kBinary);
  EXPECT_EQ(frames[1], std::make_pair(int(ws::kClose), closePayload(1000)));
}

struct BadFrame {
  const char* name;
  std::string frame;
  uint16_t code;
};

TEST_F(WebSocketStreamTest, EachBrokenFrameClosesWithItsCode) {
  const std::vector<BadFrame> cases = {
      {"unmasked", clientFrame(ws::kBinary, "x", true, false), 1002},
      {"text", clientFrame(ws::kText, "hello"), 1003},
      {"oversize", clientFrame(ws::kBinary, std::string(4097, 'x')), 1009},
      {"reserved bit", clientFrame(ws::kBinary, "x", true, true, 0x40), 1002},
      {"reserved opcode", clientFrame(0x3, "x"), 1002},
      {"continuation without a start", clientFrame(ws::kContinuation, "x"), 1002},
      {"fragmented ping", clientFrame(ws::kPing, "x", false), 1002},
      {"new message inside a fragmented one", clientFrame(ws::kBinary, "a", false) + clientFrame(ws::kBinary, "b"),
       1002},
      {"1-byte close", clientFrame(ws::kClose, "x"), 1002},
      {"close code 1005", clientFrame(ws::kClose, closePayload(1005)), 1002},
      {"close code 999", clientFrame(ws::kClose, closePayload(999)), 1002},
      {"close reason not UTF-8", clientFrame(ws::kClose, closePayload(1000, "\xff")), 1007},
  };
  for (const BadFrame& c : cases) {
    SCOPED_TRACE(c.name);
    Below below;
    WebSocketStream ws(below, cfg_);
    Top top;
    ws.setHandler(&top);
    ASSERT_TRUE(below.feed(kUpgrade));
    // A good frame before the bad one still goes up.
    EXPECT_FALSE(below.feed(clientFrame(ws::kBinary, "ok") + c.frame + clientFrame(ws::kBinary, "after")));
    EXPECT_EQ(top.received.substr(0, 2), "ok");
    EXPECT_EQ(top.received.find("after"), std::string::npos);
    ASSERT_TRUE(top.ended);
    EXPECT_EQ(top.end_why, StreamEnd::Failed);
    ws.windDown();
    std::string none;
    ws.write(none);
    const auto frames = serverFrames(below.wire.substr(below.wire.find("\r\n\r\n") + 4));
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(frames[0].first, ws::kClose);
    EXPECT_EQ(uint8_t(frames[0].second[0]) << 8 | uint8_t(frames[0].second[1]), c.code);
    EXPECT_FALSE(below.feed(clientFrame(ws::kBinary, "late")));
  }
}

TEST_F(WebSocketStreamTest, AnOversizeFrameIsRefusedBeforeItsPayload) {
  upgrade();
  const std::string frame = clientFrame(ws::kBinary, std::string(100000, 'x'));
  EXPECT_FALSE(below_.feed(frame.substr(0, 14)));  // the header alone
  expectClosedWith(1009);
}

TEST_F(WebSocketStreamTest, ARefusedHandshakeIsAnsweredAndClosedWithoutAFrame) {
  std::string head = kUpgrade;
  head.replace(4, 5, "/elsewhere");
  EXPECT_FALSE(below_.feed(head));
  EXPECT_FALSE(ws_.handshakeDone());
  ASSERT_TRUE(top_.ended);
  EXPECT_EQ(top_.end_why, StreamEnd::Failed);
  ws_.windDown();
  flush("never sent");
  EXPECT_EQ(below_.wire.rfind("HTTP/1.1 404 Not Found\r\n", 0), 0u) << below_.wire;
  EXPECT_EQ(below_.wire.find("never sent"), std::string::npos);
  EXPECT_EQ(below_.wire.find('\x88'), std::string::npos);  // no close frame before an upgrade
  EXPECT_FALSE(below_.feed(kUpgrade));                      // nothing more is read
}

TEST_F(WebSocketStreamTest, GarbageAndOversizeHeadsGet400) {
  for (const std::string& input : {std::string("\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c", 12),
                                   std::string("GET /mqtt HTTP/1.1\r\n") + std::string(1100, 'x')}) {
    Below below;
    WebSocketStream ws(below, cfg_);
    Top top;
    ws.setHandler(&top);
    EXPECT_FALSE(below.feed(input));
    EXPECT_TRUE(top.ended);
    std::string none;
    ws.write(none);
    EXPECT_EQ(below.wire.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u) << below.wire;
  }
  // A head that grows past the limit in parts.
  Below below;
  WebSocketStream ws(below, cfg_);
  Top top;
  ws.setHandler(&top);
  EXPECT_TRUE(below.feed("GET /mqtt HTTP/1.1\r\n"));
  bool open = true;
  for (int i = 0; i < 100 && open; ++i) open = below.feed("X-Filler: " + std::string(40, 'y') + "\r\n");
  EXPECT_FALSE(open);
  EXPECT_TRUE(top.ended);
}

TEST_F(WebSocketStreamTest, LargeOutputIsSplitIntoFramesOfTheLimit) {
  upgrade();
  std::string big(10000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i);
  flush(big);
  const auto frames = serverFrames(below_.wire);
  ASSERT_EQ(frames.size(), 3u);  // 4096 + 4096 + 1808
  std::string joined;
  for (const auto& f : frames) {
    EXPECT_EQ(f.first, ws::kBinary);
    EXPECT_LE(f.second.size(), 4096u);
    joined += f.second;
  }
  EXPECT_TRUE(joined == big);
}

TEST_F(WebSocketStreamTest, WhileTheStreamBelowIsBusyNothingIsTaken) {
  upgrade();
  below_.busy = true;
  std::string out = "pending";
  EXPECT_EQ(ws_.write(out), Stream::Write::InFlight);
  EXPECT_EQ(out, "pending");  // still the owner's, unframed
  out += " and more";
  below_.busy = false;
  EXPECT_EQ(ws_.write(out), Stream::Write::Written);
  EXPECT_TRUE(out.empty());
  const auto frames = serverFrames(below_.wire);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].second, "pending and more");
}

TEST_F(WebSocketStreamTest, TheOwnerStoppingInputStopsTheLayer) {
  upgrade();
  top_.keep_reading = false;
  EXPECT_FALSE(below_.feed(clientFrame(ws::kBinary, "a")));
  EXPECT_EQ(top_.received, "a");
}

}  // namespace
}  // namespace petrel
