// src/transport/websocket_protocol.h — RFC 6455 without I/O: the opening
// handshake's answer (checked against the listener's settings) and the
// frame format (header parse and encode, masking, close codes). The stream
// layer (websocket_stream.h) drives these; the unit tests call them
// directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "src/http/request.h"
#include "src/transport/websocket_config.h"

namespace petrel::ws {

// Opcodes (RFC 6455 §5.2).
enum Opcode : uint8_t {
  kContinuation = 0x0,
  kText = 0x1,
  kBinary = 0x2,
  kClose = 0x8,
  kPing = 0x9,
  kPong = 0xA,
};

// Close codes (RFC 6455 §7.4.1) the broker sends.
enum CloseCode : uint16_t {
  kNormal = 1000,
  kProtocolError = 1002,
  kUnsupportedData = 1003,
  kInvalidPayload = 1007,
  kMessageTooBig = 1009,
};

// The answer to an HTTP request on a WebSocket listener.
struct UpgradeAnswer {
  bool accepted = false;  // 101 Switching Protocols
  int status = 0;
  std::string response;   // the whole HTTP response, ready to send
  std::string why;        // when refused: for the log
  std::string protocol;   // when accepted: the subprotocol chosen
};

// Checks the upgrade request (RFC 6455 §4.2.1, MQTT 5 §6): GET, HTTP/1.1 or
// later, Host, the listener's path, Upgrade: websocket, Connection: upgrade,
// Sec-WebSocket-Version: 13, a Sec-WebSocket-Key of 16 bytes in base64, and
// the subprotocol `mqtt` (or `mqttv3.1`) offered. Refusals: 400 (malformed,
// no Host, bad key, no acceptable subprotocol), 404 (another path),
// 405 (not GET), 426 (no upgrade to websocket, or another version).
UpgradeAnswer answerUpgrade(const http::Request& req, const WebSocketConfig& cfg);

// The response to a request head that could not be parsed (400).
std::string badRequest(std::string_view why);

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)).
std::string acceptKey(std::string_view key);

// A frame header (RFC 6455 §5.2).
struct FrameHeader {
  bool fin = false;
  uint8_t rsv = 0;  // RSV1..3, as the top bits 0x70
  uint8_t opcode = 0;
  bool masked = false;
  uint64_t length = 0;
  uint8_t mask[4] = {0, 0, 0, 0};
  uint8_t size = 0;  // header bytes, 2..14
};

// The most header bytes a frame can have.
constexpr size_t kMaxHeader = 14;

// How many bytes the header starting at `p` has, once its first two bytes
// are known; 0 when n < 2.
size_t headerSize(const uint8_t* p, size_t n);
// Parses a complete header (headerSize() bytes at `p`).
void parseHeader(const uint8_t* p, FrameHeader& h);

// The close code for a client frame header that breaks the rules, given
// whether a fragmented message is in progress; 0 if it is acceptable.
// `why` names the rule for the log and the close frame.
uint16_t checkClientFrame(const FrameHeader& h, bool in_message, uint64_t max_frame_size, const char*& why);

// Writes a server frame header (unmasked, FIN set) for a payload of `len`
// bytes into `out` (kMaxHeader bytes of room); returns its size.
size_t encodeHeader(uint8_t* out, uint8_t opcode, uint64_t len);
// A whole close frame: the code and a reason (cut to fit in 125 bytes).
std::string closeFrame(uint16_t code, std::string_view reason);

// XORs `n` bytes of `src` with the mask into `dst`, the first byte being at
// `offset` from the start of the frame payload. `dst` may be `src` or lie
// before it (forward order: a payload can be moved over the headers it
// followed).
void unmask(const uint8_t* src, uint8_t* dst, size_t n, const uint8_t mask[4], uint64_t offset);

// Whether a received close code is one an endpoint may send (§7.4).
bool validCloseCode(uint16_t code);
// Well-formed UTF-8 (no overlong forms, no surrogates, nothing above
// U+10FFFF): the rule for a close frame's reason (§5.5.1, §8.1).
bool validUtf8(std::string_view s);

}  // namespace petrel::ws
