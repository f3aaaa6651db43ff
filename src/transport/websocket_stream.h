// src/transport/websocket_stream.h — MQTT over WebSocket (RFC 6455, MQTT 5
// §6) as a layer of a stream stack, server side, on TCP (ws) or on TLS
// (wss).
//
// First the opening handshake: the HTTP request head (src/http/request.h)
// is checked against the listener's settings (websocket_protocol.h) and
// answered with 101 Switching Protocols, or with an HTTP error after which
// the connection closes. Then frames: the payload of binary frames goes up
// to the handler as one byte stream (MQTT packets may span frames, a frame
// may hold several), pings are answered, a close frame is answered and ends
// the connection, and a frame that breaks the rules closes it with its
// close code. Output the owner hands down goes out as binary frames, and a
// close frame follows the last of it when the owner winds down.
//
// Costs: payload is unmasked in place in the read buffer the handler gave
// for the read (on TCP), over the frame headers, and handed up from there,
// so plain TCP and WebSocket take the same path through the codec; on TLS
// it is unmasked into a scratch buffer of the loop thread. Frames are
// streamed: a frame's payload goes up as it arrives, nothing waits for a
// whole frame. A flush costs one move of the owner's bytes to put a frame
// header in front (a flush larger than max_frame_size is copied once into
// frames). An open connection keeps no buffer of its own between reads
// except for a frame header or control frame split across reads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "src/transport/stream.h"
#include "src/transport/websocket_config.h"
#include "src/transport/websocket_protocol.h"

namespace petrel {

class WebSocketStream final : public LayerStream {
 public:
  // Takes over `lower`'s handler slot; `cfg` must outlive this layer, and
  // `lower` too unless it is `owned` (a layer that goes with this one).
  WebSocketStream(Stream& lower, const WebSocketConfig& cfg, std::unique_ptr<Stream> owned = nullptr);

  Write write(std::string& data) override;
  size_t pendingBytes() const override { return own_.size() + lower_.pendingBytes(); }
  void windDown() override;
  bool shutdown() override;
  // True once the upgrade has been answered with 101.
  bool handshakeDone() const override { return upgraded_; }

 private:
  // From the stream below.
  uint8_t* readBuffer(size_t& len, bool transformed) override;
  bool onStreamData(const uint8_t* data, size_t len) override;

  // The request head, possibly in parts; false once input has ended.
  bool readHandshake(const uint8_t* data, size_t len, uint8_t* writable);
  // Frames from `src`; `writable` is `src` when the layer may unmask in
  // place, else null. False once input has ended (or the owner stopped it).
  bool readFrames(const uint8_t* src, size_t len, uint8_t* writable);
  // A complete control frame (its payload in ctl_).
  bool controlFrame();
  // Ends input with a protocol error: the close frame with `code` goes out
  // after the owner's last output.
  bool fail(uint16_t code, const char* why);
  // Frames `data` (binary, split at max_frame_size) after `prefix`, into
  // `data`.
  void frameOutput(std::string& prefix, std::string& data) const;

  std::unique_ptr<Stream> owned_;  // the layer below, when this one owns it
  const WebSocketConfig& cfg_;
  uint64_t max_frame_;
  // The read buffer handed to the stream below: bytes that arrive in it
  // may be rewritten in place.
  uint8_t* rb_ = nullptr;
  size_t rb_len_ = 0;
  // The frame being read.
  ws::FrameHeader frame_;
  uint64_t payload_left_ = 0;  // bytes of its payload still to come
  uint64_t payload_off_ = 0;   // bytes of it already read (the mask's phase)
  uint8_t hdr_[ws::kMaxHeader];  // a header split across reads
  uint8_t hdr_len_ = 0;
  bool in_frame_ = false;      // a header was read, its payload is due
  bool in_message_ = false;    // a fragmented binary message is open
  bool upgraded_ = false;      // 101 sent (or queued)
  bool input_done_ = false;    // a close frame, an error, a refused handshake
  bool winding_down_ = false;  // windDown(): the close frame follows the last output
  bool close_sent_ = false;
  bool pong_due_ = false;
  uint16_t close_code_ = ws::kNormal;  // the code of our close frame
  const char* close_reason_ = "";
  std::string head_;  // the request head, while it arrives in parts
  std::string ctl_;   // payload of the control frame being read
  std::string pong_;  // payload of the pong owed (only the latest ping is answered)
  std::string own_;   // the handshake answer, until written
};

}  // namespace petrel
