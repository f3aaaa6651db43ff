// RFC 6455 without I/O: the answer to an upgrade request (accepted, and each
// refusal with its status), frame headers (every length form, the rules a
// client frame must follow and their close codes), masking at every phase
// and in place, close frames, close codes and UTF-8.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "src/http/request.h"
#include "src/transport/websocket_protocol.h"

namespace petrel::ws {
namespace {

constexpr const char* kBrowserRequest =
    "GET /mqtt HTTP/1.1\r\n"
    "Host: 127.0.0.1:8080\r\n"
    "Connection: Upgrade\r\n"
    "Upgrade: websocket\r\n"
    "Origin: http://127.0.0.1:8000\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Protocol: mqtt\r\n"
    "\r\n";

http::Request parse(const std::string& head) {
  http::Request r;
  size_t used = 0;
  std::string error;
  EXPECT_EQ(http::parseRequest(head, 8192, r, used, error), http::Parse::Done) << error << "\n" << head;
  return r;
}

// The browser request with one header line replaced (or removed: "").
std::string with(const std::string& name, const std::string& line) {
  std::string h = kBrowserRequest;
  const size_t at = h.find(name + ":");
  EXPECT_NE(at, std::string::npos) << name;
  const size_t eol = h.find("\r\n", at);
  h.replace(at, eol + 2 - at, line.empty() ? "" : line + "\r\n");
  return h;
}

UpgradeAnswer answer(const std::string& head, const WebSocketConfig& cfg = {}) {
  return answerUpgrade(parse(head), cfg);
}

TEST(WebSocketHandshake, AcceptKeyOfTheRfcExample) {
  EXPECT_EQ(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

TEST(WebSocketHandshake, ABrowserUpgradeIsAccepted) {
  const UpgradeAnswer a = answer(kBrowserRequest);
  ASSERT_TRUE(a.accepted) << a.why;
  EXPECT_EQ(a.status, 101);
  EXPECT_EQ(a.protocol, "mqtt");
  EXPECT_EQ(a.response,
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n"
            "\r\n");
}

TEST(WebSocketHandshake, TokensQueryStringsAndSubprotocolChoice) {
  // Tokens in lists, any case; the query string is not part of the path.
  std::string h = with("Connection", "Connection: keep-alive, UPGRADE");
  h.replace(0, 9, "GET /mqtt?clientId=x");
  UpgradeAnswer a = answer(h);
  ASSERT_TRUE(a.accepted) << a.why;
  // "mqtt" wins over "mqttv3.1"; "mqttv3.1" alone is accepted.
  a = answer(with("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: mqttv3.1, mqtt"));
  EXPECT_EQ(a.protocol, "mqtt");
  a = answer(with("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: chat, mqttv3.1"));
  ASSERT_TRUE(a.accepted);
  EXPECT_EQ(a.protocol, "mqttv3.1");
  EXPECT_NE(a.response.find("Sec-WebSocket-Protocol: mqttv3.1\r\n"), std::string::npos);
  // Another path, when configured.
  WebSocketConfig cfg;
  cfg.path = "/ws";
  EXPECT_FALSE(answer(kBrowserRequest, cfg).accepted);
  h = kBrowserRequest;
  h.replace(4, 5, "/ws");
  EXPECT_TRUE(answer(h, cfg).accepted);
}

TEST(WebSocketHandshake, RefusalsCarryTheirStatusAndCloseTheConnection) {
  struct Case {
    std::string head;
    int status;
    const char* why;
  };
  std::string post = kBrowserRequest;
  post.replace(0, 3, "POST");
  std::string http10 = kBrowserRequest;
  http10.replace(http10.find("HTTP/1.1"), 8, "HTTP/1.0");
  std::string other_path = kBrowserRequest;
  other_path.replace(4, 5, "/other");
  const std::vector<Case> cases = {
      {post, 405, "a WebSocket upgrade is a GET request"},
      {http10, 400, "needs HTTP/1.1"},
      {with("Host", ""), 400, "no Host"},
      {other_path, 404, "no WebSocket endpoint at '/other'"},
      {with("Upgrade", ""), 426, "Upgrade: websocket"},
      {with("Upgrade", "Upgrade: h2c"), 426, "Upgrade: websocket"},
      {with("Connection", "Connection: keep-alive"), 426, "Upgrade: websocket"},
      {with("Sec-WebSocket-Version", ""), 400, "no Sec-WebSocket-Version"},
      {with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"), 426, "version '8' is not supported"},
      {with("Sec-WebSocket-Key", ""), 400, "no Sec-WebSocket-Key"},
      {with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZQ=="), 400, "not 16 bytes"},
      {with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ"), 400, "not 16 bytes"},
      {with("Sec-WebSocket-Key", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j!Q=="), 400, "not 16 bytes"},
      {with("Sec-WebSocket-Protocol", ""), 400, "no Sec-WebSocket-Protocol header field: offer the subprotocol mqtt"},
      {with("Sec-WebSocket-Protocol", "Sec-WebSocket-Protocol: mqttv5, chat"), 400,
       "no acceptable subprotocol in Sec-WebSocket-Protocol 'mqttv5, chat'"},
  };
  for (const Case& c : cases) {
    const UpgradeAnswer a = answer(c.head);
    EXPECT_FALSE(a.accepted) << c.head;
    EXPECT_EQ(a.status, c.status) << c.head;
    EXPECT_NE(a.why.find(c.why), std::string::npos) << a.why;
    EXPECT_EQ(a.response.rfind("HTTP/1.1 " + std::to_string(c.status) + " ", 0), 0u) << a.response;
    EXPECT_NE(a.response.find(c.status == 426 ? "\r\nConnection: Upgrade, close\r\n" : "\r\nConnection: close\r\n"),
              std::string::npos)
        << a.response;
    if (c.status == 426) {
      EXPECT_NE(a.response.find("\r\nUpgrade: websocket\r\n"), std::string::npos);
    }
    EXPECT_NE(a.response.find("\r\n\r\n" + a.why + "\n"), std::string::npos) << a.response;
    if (c.status == 426) {
      EXPECT_NE(a.response.find("Sec-WebSocket-Version: 13\r\n"), std::string::npos);
    }
    if (c.status == 405) {
      EXPECT_NE(a.response.find("Allow: GET\r\n"), std::string::npos);
    }
  }
  const std::string bad = badRequest("not an HTTP request");
  EXPECT_EQ(bad.rfind("HTTP/1.1 400 Bad Request\r\n", 0), 0u);
  EXPECT_NE(bad.find("\r\n\r\nnot an HTTP request\n"), std::string::npos);
}

TEST(WebSocketHandshake, LongClientValuesAreCutInAnswers) {
  std::string h = kBrowserRequest;
  h.replace(4, 5, "/" + std::string(1000, 'x'));
  const UpgradeAnswer a = answer(h);
  EXPECT_EQ(a.status, 404);
  EXPECT_LT(a.why.size(), 200u);
}

// Frames ---------------------------------------------------------------

std::vector<uint8_t> clientHeader(uint8_t b0, uint8_t len7, const std::vector<uint8_t>& ext, bool masked = true) {
  std::vector<uint8_t> h = {b0, static_cast<uint8_t>(len7 | (masked ? 0x80 : 0))};
  for (uint8_t b : ext) h.push_back(b);
  if (masked) {
    for (uint8_t b = 1; b <= 4; ++b) h.push_back(b);
  }
  return h;
}

FrameHeader parsed(const std::vector<uint8_t>& h) {
  FrameHeader f;
  EXPECT_EQ(headerSize(h.data(), h.size()), h.size());
  parseHeader(h.data(), f);
  EXPECT_EQ(size_t(f.size), h.size());
  return f;
}

TEST(WebSocketFrames, HeadersInEveryLengthForm) {
  uint8_t one = 0x82;
  EXPECT_EQ(headerSize(&one, 1), 0u);  // the second byte decides
  FrameHeader f = parsed(clientHeader(0x82, 5, {}));
  EXPECT_TRUE(f.fin);
  EXPECT_EQ(f.opcode, kBinary);
  EXPECT_TRUE(f.masked);
  EXPECT_EQ(f.length, 5u);
  EXPECT_EQ(f.mask[0], 1);
  EXPECT_EQ(f.mask[3], 4);
  f = parsed(clientHeader(0x02, 126, {0x01, 0x00}));
  EXPECT_FALSE(f.fin);
  EXPECT_EQ(f.length, 256u);
  EXPECT_EQ(f.size, 8);
  f = parsed(clientHeader(0x80, 127, {0, 0, 0, 1, 0, 0, 0, 0}));
  EXPECT_EQ(f.opcode, kContinuation);
  EXPECT_EQ(f.length, 1ull << 32);
  EXPECT_EQ(f.size, 14);
  f = parsed(clientHeader(0xF2, 0, {}, false));
  EXPECT_EQ(f.rsv, 0x70);
  EXPECT_FALSE(f.masked);
  EXPECT_EQ(f.size, 2);
}

TEST(WebSocketFrames, ClientFrameRulesAndTheirCloseCodes) {
  struct Case {
    std::vector<uint8_t> header;
    bool in_message;
    uint16_t code;
    const char* why;
  };
  const std::vector<Case> cases = {
      {clientHeader(0x82, 10, {}), false, 0, ""},
      {clientHeader(0x02, 10, {}), false, 0, ""},                // first fragment
      {clientHeader(0x80, 10, {}), true, 0, ""},                 // last fragment
      {clientHeader(0x89, 125, {}), true, 0, ""},                // ping between fragments
      {clientHeader(0x88, 0, {}), false, 0, ""},
      {clientHeader(0x8A, 3, {}), false, 0, ""},
      {clientHeader(0x82, 126, {0x00, 0x7E}), false, 0, ""},     // 126: the shortest 16-bit form
      {clientHeader(0x82, 127, {0, 0, 0, 0, 0, 1, 0, 0}), false, 0, ""},
      {clientHeader(0x82, 10, {}, false), false, kProtocolError, "unmasked client frame"},
      {clientHeader(0xC2, 10, {}), false, kProtocolError, "reserved bits"},
      {clientHeader(0x92, 10, {}), false, kProtocolError, "reserved bits"},
      {clientHeader(0x81, 10, {}), false, kUnsupportedData, "text frame"},
      {clientHeader(0x80, 10, {}), false, kProtocolError, "continuation frame with no message"},
      {clientHeader(0x82, 10, {}), true, kProtocolError, "new message before the fragmented one ended"},
      {clientHeader(0x09, 1, {}), false, kProtocolError, "fragmented control frame"},
      {clientHeader(0x89, 126, {0x00, 0x7E}), false, kProtocolError, "control frame longer than 125"},
      {clientHeader(0x83, 1, {}), false, kProtocolError, "reserved opcode"},
      {clientHeader(0x87, 1, {}), false, kProtocolError, "reserved opcode"},
      {clientHeader(0x8B, 1, {}), false, kProtocolError, "reserved opcode"},
      {clientHeader(0x8F, 1, {}), false, kProtocolError, "reserved opcode"},
      {clientHeader(0x82, 126, {0x00, 0x7D}), false, kProtocolError, "shortest form"},
      {clientHeader(0x82, 127, {0, 0, 0, 0, 0, 0, 0xFF, 0xFF}), false, kProtocolError, "shortest form"},
      {clientHeader(0x82, 127, {0x80, 0, 0, 0, 0, 0, 0, 0}), false, kProtocolError, "above 2^63"},
      {clientHeader(0x82, 127, {0, 0, 0, 0, 0, 0x10, 0, 1}), false, kMessageTooBig, "larger than max_frame_size"},
  };
  for (const Case& c : cases) {
    FrameHeader f;
    parseHeader(c.header.data(), f);
    const char* why = "";
    EXPECT_EQ(checkClientFrame(f, c.in_message, 1 << 20, why), c.code) << c.why;
    EXPECT_NE(std::string(why).find(c.why), std::string::npos) << why;
  }
  // The limit is inclusive.
  FrameHeader f;
  const auto h = clientHeader(0x82, 126, {0x04, 0x00});
  parseHeader(h.data(), f);
  const char* why = "";
  EXPECT_EQ(checkClientFrame(f, false, 1024, why), 0);
  EXPECT_EQ(checkClientFrame(f, false, 1023, why), kMessageTooBig);
}

TEST(WebSocketFrames, ServerHeadersRoundTrip) {
  for (uint64_t len : {0ull, 1ull, 125ull, 126ull, 65535ull, 65536ull, 1ull << 40}) {
    uint8_t h[kMaxHeader];
    const size_t n = encodeHeader(h, kBinary, len);
    EXPECT_EQ(n, len < 126 ? 2u : len <= 65535 ? 4u : 10u);
    ASSERT_EQ(headerSize(h, n), n);
    FrameHeader f;
    parseHeader(h, f);
    EXPECT_TRUE(f.fin);
    EXPECT_FALSE(f.masked);  // server frames are never masked
    EXPECT_EQ(f.rsv, 0);
    EXPECT_EQ(f.opcode, kBinary);
    EXPECT_EQ(f.length, len);
  }
}

TEST(WebSocketFrames, UnmaskAtEveryPhaseAndInPlace) {
  const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
  std::vector<uint8_t> plain(100);
  for (size_t i = 0; i < plain.size(); ++i) plain[i] = static_cast<uint8_t>(i * 7 + 3);
  for (uint64_t offset = 0; offset < 8; ++offset) {
    for (size_t n = 0; n <= 40; ++n) {
      std::vector<uint8_t> masked(n), out(n);
      for (size_t i = 0; i < n; ++i) masked[i] = plain[i] ^ mask[(offset + i) % 4];
      unmask(masked.data(), out.data(), n, mask, offset);
      EXPECT_TRUE(std::equal(out.begin(), out.end(), plain.begin())) << offset << " " << n;
    }
  }
  // In place, moved back over a header of each size: what a read buffer
  // holding [header][masked payload] becomes.
  for (size_t shift : {0u, 2u, 6u, 8u, 14u}) {
    std::vector<uint8_t> buf(shift + plain.size(), 0xEE);
    for (size_t i = 0; i < plain.size(); ++i) buf[shift + i] = plain[i] ^ mask[i % 4];
    unmask(buf.data() + shift, buf.data(), plain.size(), mask, 0);
    EXPECT_TRUE(std::equal(plain.begin(), plain.end(), buf.begin())) << shift;
  }
  // The RFC's example: "Hello" masked with 37 fa 21 3d.
  const uint8_t hello[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
  uint8_t out[5];
  unmask(hello, out, 5, mask, 0);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(out), 5), "Hello");
}

TEST(WebSocketFrames, CloseFramesCodesAndUtf8) {
  EXPECT_EQ(closeFrame(1000, ""), std::string("\x88\x02\x03\xe8", 4));
  const std::string f = closeFrame(kMessageTooBig, "frame too large");
  EXPECT_EQ(f.substr(0, 4), std::string("\x88\x11\x03\xf1", 4));
  EXPECT_EQ(f.substr(4), "frame too large");
  EXPECT_EQ(closeFrame(1002, std::string(300, 'x')).size(), 2u + 125u);  // a control frame's limit
  for (uint16_t c : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1014, 3000, 4999})
    EXPECT_TRUE(validCloseCode(c)) << c;
  for (uint16_t c : {0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535}) EXPECT_FALSE(validCloseCode(c)) << c;
  EXPECT_TRUE(validUtf8(""));
  EXPECT_TRUE(validUtf8(std::string("a\0b", 3)));  // U+0000 is fine in WebSocket text
  EXPECT_TRUE(validUtf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"));
  EXPECT_FALSE(validUtf8("\xc3"));              // cut short
  EXPECT_FALSE(validUtf8("\xc0\xaf"));          // overlong
  EXPECT_FALSE(validUtf8("\xed\xa0\x80"));      // a surrogate
  EXPECT_FALSE(validUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(validUtf8("\xff"));
  EXPECT_FALSE(validUtf8("\x80"));
}

}  // namespace
}  // namespace petrel::ws
