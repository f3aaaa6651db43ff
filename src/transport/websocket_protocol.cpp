// src/transport/websocket_protocol.cpp — the handshake answer and the frame
// format of RFC 6455, for the server side.
#include "src/transport/websocket_protocol.h"

#include <cstring>
#include <vector>

#include "tls/crypto.h"

namespace petrel::ws {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// What a refused request is told: a short plain-text reason, and the
// connection closes after it. A 426 names the upgrade it requires
// (RFC 9110 §15.5.22), and its Connection field says so too.
UpgradeAnswer refuse(int status, std::string_view reason_phrase, std::string why,
                     std::vector<std::string> headers = {}) {
  UpgradeAnswer a;
  a.status = status;
  headers.insert(headers.begin(), {"Content-Type: text/plain; charset=utf-8",
                                   status == 426 ? "Connection: Upgrade, close" : "Connection: close"});
  a.response = http::response(status, reason_phrase, headers, why + "\n");
  a.why = std::move(why);
  return a;
}

// A client-supplied value quoted in a log line or an answer, cut short.
std::string quoted(std::string_view v) {
  constexpr size_t kMax = 64;
  std::string s = "'";
  s.append(v.substr(0, kMax));
  if (v.size() > kMax) s += "...";
  return s + "'";
}

}  // namespace

std::string acceptKey(std::string_view key) { return tls::base64Encode(tls::sha1(key, kGuid)); }

std::string badRequest(std::string_view why) {
  return refuse(400, "Bad Request", std::string(why)).response;
}

UpgradeAnswer answerUpgrade(const http::Request& req, const WebSocketConfig& cfg) {
  if (req.method != "GET")
    return refuse(405, "Method Not Allowed", "a WebSocket upgrade is a GET request, not " + quoted(req.method),
                  {"Allow: GET"});
  if (req.minor_version < 1) return refuse(400, "Bad Request", "a WebSocket upgrade needs HTTP/1.1");
  if (!req.header("Host")) return refuse(400, "Bad Request", "no Host header field");
  if (req.path() != cfg.path)
    return refuse(404, "Not Found", "no WebSocket endpoint at " + quoted(req.path()) + " (it is at " + cfg.path + ")");
  const std::vector<std::string> upgrade_headers = {"Upgrade: websocket", "Sec-WebSocket-Version: 13"};
  if (!req.headerHasToken("Upgrade", "websocket") || !req.headerHasToken("Connection", "upgrade"))
    return refuse(426, "Upgrade Required",
                  "this is an MQTT over WebSocket endpoint: the request must ask for Upgrade: websocket",
                  upgrade_headers);
  const std::string* version = req.header("Sec-WebSocket-Version");
  if (!version) return refuse(400, "Bad Request", "no Sec-WebSocket-Version header field");
  if (*version != "13")
    return refuse(426, "Upgrade Required", "WebSocket version " + quoted(*version) + " is not supported (13 is)",
                  upgrade_headers);
  const std::string* key = req.header("Sec-WebSocket-Key");
  std::string nonce;
  if (!key) return refuse(400, "Bad Request", "no Sec-WebSocket-Key header field");
  if (key->size() != 24 || !tls::base64Decode(*key, nonce) || nonce.size() != 16)
    return refuse(400, "Bad Request", "Sec-WebSocket-Key " + quoted(*key) + " is not 16 bytes in base64");
  // MQTT 5 §6 [MQTT-6.0.0-3]: the client offers "mqtt"; "mqttv3.1" is the
  // name MQTT 3.1 clients used.
  std::string protocol;
  if (req.headerHasToken("Sec-WebSocket-Protocol", "mqtt"))
    protocol = "mqtt";
  else if (req.headerHasToken("Sec-WebSocket-Protocol", "mqttv3.1"))
    protocol = "mqttv3.1";
  else
    return refuse(400, "Bad Request",
                  req.header("Sec-WebSocket-Protocol")
                      ? "no acceptable subprotocol in Sec-WebSocket-Protocol " +
                            quoted(*req.header("Sec-WebSocket-Protocol")) + ": offer mqtt"
                      : std::string("no Sec-WebSocket-Protocol header field: offer the subprotocol mqtt"));
  UpgradeAnswer a;
  a.accepted = true;
  a.status = 101;
  a.protocol = protocol;
  a.response = http::response(101, "Switching Protocols",
                              {"Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Accept: " + acceptKey(*key),
                               "Sec-WebSocket-Protocol: " + protocol},
                              {}, false);
  return a;
}

size_t headerSize(const uint8_t* p, size_t n) {
  if (n < 2) return 0;
  size_t s = 2;
  const uint8_t len7 = p[1] & 0x7F;
  if (len7 == 126) s += 2;
  else if (len7 == 127) s += 8;
  if (p[1] & 0x80) s += 4;
  return s;
}

void parseHeader(const uint8_t* p, FrameHeader& h) {
  h.fin = p[0] & 0x80;
  h.rsv = p[0] & 0x70;
  h.opcode = p[0] & 0x0F;
  h.masked = p[1] & 0x80;
  const uint8_t len7 = p[1] & 0x7F;
  size_t i = 2;
  if (len7 == 126) {
    h.length = uint64_t(p[2]) << 8 | p[3];
    i = 4;
  } else if (len7 == 127) {
    h.length = 0;
    for (size_t k = 0; k < 8; ++k) h.length = h.length << 8 | p[2 + k];
    i = 10;
  } else {
    h.length = len7;
  }
  if (h.masked) {
    std::memcpy(h.mask, p + i, 4);
    i += 4;
  }
  h.size = static_cast<uint8_t>(i);
}

uint16_t checkClientFrame(const FrameHeader& h, bool in_message, uint64_t max_frame_size, const char*& why) {
  if (h.rsv) {
    why = "reserved bits set (no extension was negotiated)";
    return kProtocolError;
  }
  // §5.1: a client masks every frame.
  if (!h.masked) {
    why = "unmasked client frame";
    return kProtocolError;
  }
  // §5.2: the length in its shortest form, and below 2^63.
  const size_t length_bytes = h.size - (h.masked ? 4 : 0) - 2;
  if ((length_bytes == 2 && h.length < 126) || (length_bytes == 8 && h.length <= 0xFFFF)) {
    why = "frame length not in its shortest form";
    return kProtocolError;
  }
  if (h.length >> 63) {
    why = "frame length above 2^63";
    return kProtocolError;
  }
  switch (h.opcode) {
    case kContinuation:
      if (!in_message) {
        why = "continuation frame with no message to continue";
        return kProtocolError;
      }
      break;
    case kText:
      why = "text frame (MQTT travels in binary frames)";
      return kUnsupportedData;
    case kBinary:
      if (in_message) {
        why = "new message before the fragmented one ended";
        return kProtocolError;
      }
      break;
    case kClose:
    case kPing:
    case kPong:
      if (!h.fin) {
        why = "fragmented control frame";
        return kProtocolError;
      }
      if (h.length > 125) {
        why = "control frame longer than 125 bytes";
        return kProtocolError;
      }
      break;
    default:
      why = "reserved opcode";
      return kProtocolError;
  }
  if (h.length > max_frame_size) {
    why = "frame larger than max_frame_size";
    return kMessageTooBig;
  }
  return 0;
}

size_t encodeHeader(uint8_t* out, uint8_t opcode, uint64_t len) {
  out[0] = static_cast<uint8_t>(0x80 | opcode);
  if (len < 126) {
    out[1] = static_cast<uint8_t>(len);
    return 2;
  }
  if (len <= 0xFFFF) {
    out[1] = 126;
    out[2] = static_cast<uint8_t>(len >> 8);
    out[3] = static_cast<uint8_t>(len);
    return 4;
  }
  out[1] = 127;
  for (size_t k = 0; k < 8; ++k) out[2 + k] = static_cast<uint8_t>(len >> (56 - 8 * k));
  return 10;
}

std::string closeFrame(uint16_t code, std::string_view reason) {
  reason = reason.substr(0, 123);
  uint8_t h[kMaxHeader];
  const size_t n = encodeHeader(h, kClose, 2 + reason.size());
  std::string f(reinterpret_cast<const char*>(h), n);
  f.push_back(static_cast<char>(code >> 8));
  f.push_back(static_cast<char>(code & 0xFF));
  f.append(reason);
  return f;
}

void unmask(const uint8_t* src, uint8_t* dst, size_t n, const uint8_t mask[4], uint64_t offset) {
  // 16-byte vectors (SSE2 on x86-64, NEON on ARM, plain words elsewhere).
  typedef uint8_t Vec __attribute__((vector_size(16)));
  uint8_t m[16];
  for (size_t k = 0; k < 16; ++k) m[k] = mask[(offset + k) & 3];
  Vec mv;
  std::memcpy(&mv, m, 16);
  size_t i = 0;
  // 32 bytes at a time, both loads before the stores: correct when dst
  // lies at or before src, even overlapping it.
  for (; i + 32 <= n; i += 32) {
    Vec a, b;
    std::memcpy(&a, src + i, 16);
    std::memcpy(&b, src + i + 16, 16);
    a ^= mv;
    b ^= mv;
    std::memcpy(dst + i, &a, 16);
    std::memcpy(dst + i + 16, &b, 16);
  }
  for (; i < n; ++i) dst[i] = src[i] ^ m[i & 15];
}

bool validCloseCode(uint16_t code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

bool validUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t more;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      more = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      more = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      more = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= more) return false;
    for (size_t k = 1; k <= more; ++k) {
      const uint8_t b = static_cast<uint8_t>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = cp << 6 | (b & 0x3F);
    }
    static constexpr uint32_t kMin[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[more] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += more + 1;
  }
  return true;
}

}  // namespace petrel::ws
