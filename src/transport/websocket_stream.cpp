// src/transport/websocket_stream.cpp — the WebSocket layer: the opening
// handshake, frames in (unmasked in place or through the thread's scratch
// buffer, streamed up), frames out (one header in front of each flush),
// pings, the close handshake and the close codes of broken frames.
#include "src/transport/websocket_stream.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>

#include "src/http/request.h"
#include "src/util/log.h"

namespace petrel {

namespace {

// Payload unmasked from a buffer the layer may not write (TLS plaintext)
// goes up from here, in pieces of at most this size.
constexpr size_t kScratchSize = 64 * 1024;

uint8_t* scratch() {
  thread_local std::unique_ptr<uint8_t[]> buf(new uint8_t[kScratchSize]);
  return buf.get();
}

bool isControl(uint8_t opcode) { return opcode & 0x8; }

}  // namespace

WebSocketStream::WebSocketStream(Stream& lower, const WebSocketConfig& cfg, std::unique_ptr<Stream> owned)
    : LayerStream(lower),
      owned_(std::move(owned)),
      cfg_(cfg),
      max_frame_(cfg.max_frame_size ? cfg.max_frame_size : (1u << 20) + WebSocketConfig::kFrameSlack) {}

uint8_t* WebSocketStream::readBuffer(size_t& len, bool) {
  // Frames never land in the handler's decode space: their payload is
  // moved over their headers first.
  rb_ = handler_->readBuffer(len, true);
  rb_len_ = len;
  return rb_;
}

bool WebSocketStream::onStreamData(const uint8_t* data, size_t len) {
  if (input_done_) return false;
  // Bytes the stream below read into the buffer this layer handed out
  // (TCP) may be rewritten; a layer in between (TLS) passes bytes of its
  // own.
  uint8_t* writable = nullptr;
  const std::less_equal<const uint8_t*> le;
  if (rb_ && le(rb_, data) && le(data + len, rb_ + rb_len_)) writable = rb_ + (data - rb_);
  if (!upgraded_) return readHandshake(data, len, writable);
  return readFrames(data, len, writable);
}

bool WebSocketStream::readHandshake(const uint8_t* data, size_t len, uint8_t* writable) {
  handler_->onStreamActivity();
  // Usually the whole head comes in one read and is parsed where it lies;
  // a head in parts is gathered. Either way no more than max_header_bytes
  // is looked at.
  const size_t room = cfg_.max_header_bytes - std::min<size_t>(head_.size(), cfg_.max_header_bytes);
  const size_t taken = std::min(len, room);
  if (!head_.empty()) head_.append(reinterpret_cast<const char*>(data), taken);
  const std::string_view view =
      head_.empty() ? std::string_view(reinterpret_cast<const char*>(data), taken) : std::string_view(head_);
  http::Request req;
  size_t used = 0;
  std::string error;
  ws::UpgradeAnswer answer;
  switch (http::parseRequest(view, cfg_.max_header_bytes, req, used, error)) {
    case http::Parse::Incomplete:
      if (head_.empty()) head_.assign(view);
      return true;
    case http::Parse::Error:
      answer.status = 400;
      answer.response = ws::badRequest(error);
      answer.why = error;
      break;
    case http::Parse::Done:
      answer = ws::answerUpgrade(req, cfg_);
      break;
  }
  own_ = std::move(answer.response);
  handler_->onStreamOutput();
  if (!answer.accepted) {
    LOG_NOTICE("closing %s: WebSocket handshake refused with %d: %s", peer().c_str(), answer.status,
               answer.why.c_str());
    std::string().swap(head_);
    input_done_ = true;
    // The answer goes out, then the connection closes.
    handler_->onStreamEnd(StreamEnd::Failed);
    return false;
  }
  upgraded_ = true;
  LOG_DEBUG("WebSocket upgrade from %s on %s, subprotocol %s", peer().c_str(), req.target.c_str(),
            answer.protocol.c_str());
  // A client should wait for the answer before its first frame; bytes that
  // came right behind the head are read as frames all the same.
  bool ok = true;
  if (head_.empty()) {
    if (used < len) ok = readFrames(data + used, len - used, writable ? writable + used : nullptr);
  } else {
    std::string head;
    head.swap(head_);
    if (used < head.size())
      ok = readFrames(reinterpret_cast<const uint8_t*>(head.data()) + used, head.size() - used,
                      reinterpret_cast<uint8_t*>(head.data()) + used);
    if (ok && taken < len) ok = readFrames(data + taken, len - taken, writable ? writable + taken : nullptr);
  }
  return ok;
}

bool WebSocketStream::readFrames(const uint8_t* src, size_t len, uint8_t* writable) {
  // Payload is gathered at `out` and handed up in one piece per read (or
  // per scratch buffer, or before a close frame). In place, `out` never
  // overtakes the bytes still to be read: headers only shrink the data.
  uint8_t* const out = writable ? writable : scratch();
  const size_t cap = writable ? len : kScratchSize;
  size_t out_len = 0;
  bool delivered = false;
  auto deliver = [&]() {
    if (out_len == 0) return true;
    delivered = true;
    const size_t n = out_len;
    out_len = 0;
    return handler_->onStreamData(out, n);
  };
  size_t pos = 0;
  while (pos < len) {
    if (!in_frame_) {
      // The header: read where it lies when it is whole, else gathered.
      bool have = false;
      if (hdr_len_ == 0) {
        const size_t need = ws::headerSize(src + pos, len - pos);
        if (need && need <= len - pos) {
          ws::parseHeader(src + pos, frame_);
          pos += need;
          have = true;
        }
      }
      if (!have) {
        while (pos < len) {
          hdr_[hdr_len_++] = src[pos++];
          const size_t need = ws::headerSize(hdr_, hdr_len_);
          if (need && hdr_len_ == need) break;
        }
        const size_t need = ws::headerSize(hdr_, hdr_len_);
        if (!need || hdr_len_ < need) break;  // the rest comes with the next read
        ws::parseHeader(hdr_, frame_);
        hdr_len_ = 0;
      }
      const char* why = "";
      if (const uint16_t code = ws::checkClientFrame(frame_, in_message_, max_frame_, why)) {
        // What came before the bad frame was good: it goes up first.
        if (!deliver()) return false;
        return fail(code, why);
      }
      in_frame_ = true;
      payload_left_ = frame_.length;
      payload_off_ = 0;
      if (isControl(frame_.opcode)) ctl_.clear();
      else in_message_ = !frame_.fin;
    } else {
      size_t take = static_cast<size_t>(std::min<uint64_t>(payload_left_, len - pos));
      if (isControl(frame_.opcode)) {
        const size_t old = ctl_.size();
        ctl_.resize(old + take);
        ws::unmask(src + pos, reinterpret_cast<uint8_t*>(ctl_.data()) + old, take, frame_.mask, payload_off_);
      } else {
        if (out_len == cap && !deliver()) return false;
        take = std::min(take, cap - out_len);
        ws::unmask(src + pos, out + out_len, take, frame_.mask, payload_off_);
        out_len += take;
      }
      pos += take;
      payload_left_ -= take;
      payload_off_ += take;
    }
    if (in_frame_ && payload_left_ == 0) {
      in_frame_ = false;
      if (isControl(frame_.opcode)) {
        // A close frame ends input: the data before it goes up first.
        if (frame_.opcode == ws::kClose && !deliver()) return false;
        if (!controlFrame()) return false;
      }
    }
  }
  if (!deliver()) return false;
  // Bytes that passed nothing up (a ping, a partial header) still show
  // that the peer is alive.
  if (!delivered) handler_->onStreamActivity();
  return true;
}

bool WebSocketStream::controlFrame() {
  switch (frame_.opcode) {
    case ws::kPing:
      // Only the latest ping is answered when several wait (§5.5.3).
      pong_.swap(ctl_);
      pong_due_ = true;
      handler_->onStreamOutput();
      break;
    case ws::kPong:
      break;  // unsolicited, or the answer to a ping we never send
    case ws::kClose: {
      if (ctl_.size() == 1) return fail(ws::kProtocolError, "close frame with a 1-byte payload");
      uint16_t code = ws::kNormal;
      if (ctl_.size() >= 2) {
        code = static_cast<uint16_t>(uint8_t(ctl_[0]) << 8 | uint8_t(ctl_[1]));
        if (!ws::validCloseCode(code)) return fail(ws::kProtocolError, "invalid close code");
        if (!ws::validUtf8(std::string_view(ctl_).substr(2)))
          return fail(ws::kInvalidPayload, "close reason not in UTF-8");
      }
      LOG_DEBUG("WebSocket close from %s: code %u", peer().c_str(), code);
      // The answer echoes the code; then the connection closes.
      close_code_ = code;
      close_reason_ = "";
      input_done_ = true;
      std::string().swap(ctl_);
      handler_->onStreamEnd(StreamEnd::Failed);
      return false;
    }
  }
  if (ctl_.capacity() > 15) std::string().swap(ctl_);
  return true;
}

bool WebSocketStream::fail(uint16_t code, const char* why) {
  LOG_NOTICE("closing %s: WebSocket %s (close %u)", peer().c_str(), why, code);
  close_code_ = code;
  close_reason_ = why;
  input_done_ = true;
  std::string().swap(ctl_);
  // The close frame goes out after the owner's last output, then the
  // connection closes.
  handler_->onStreamEnd(StreamEnd::Failed);
  return false;
}

void WebSocketStream::frameOutput(std::string& prefix, std::string& data) const {
  uint8_t h[ws::kMaxHeader];
  if (data.size() <= max_frame_) {
    // One frame: its header (and what goes before it) moved in front.
    prefix.append(reinterpret_cast<const char*>(h), ws::encodeHeader(h, ws::kBinary, data.size()));
    data.insert(0, prefix);
    return;
  }
  std::string wire;
  wire.reserve(prefix.size() + data.size() + (data.size() / max_frame_ + 1) * ws::kMaxHeader);
  wire = prefix;
  for (size_t pos = 0; pos < data.size(); pos += max_frame_) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(max_frame_, data.size() - pos));
    wire.append(reinterpret_cast<const char*>(h), ws::encodeHeader(h, ws::kBinary, n));
    wire.append(data, pos, n);
  }
  data.swap(wire);
}

Stream::Write WebSocketStream::write(std::string& data) {
  // While the stream below has a write in flight this layer takes nothing
  // (as TCP does): the owner's bytes grow into one frame, written when the
  // write in flight ends (onStreamWritable).
  if (lower_.writing()) return Write::InFlight;
  // Nothing of the owner's goes before the upgrade or after the close frame.
  if (!upgraded_ || close_sent_) data.clear();
  std::string prefix;
  prefix.swap(own_);  // the handshake answer
  if (pong_due_ && !close_sent_) {
    uint8_t h[ws::kMaxHeader];
    prefix.append(reinterpret_cast<const char*>(h), ws::encodeHeader(h, ws::kPong, pong_.size()));
    prefix += pong_;
    std::string().swap(pong_);
    pong_due_ = false;
  }
  if (!data.empty())
    frameOutput(prefix, data);
  else if (!prefix.empty())
    data.swap(prefix);
  if (winding_down_ && upgraded_ && !close_sent_) {
    data += ws::closeFrame(close_code_, close_reason_);
    close_sent_ = true;
  }
  return lower_.write(data);
}

void WebSocketStream::windDown() {
  winding_down_ = true;
  lower_.windDown();
}

bool WebSocketStream::shutdown() {
  // Normally the close frame went out with the last write (windDown); a
  // half-close without winding down sends it now.
  if (upgraded_ && !close_sent_) {
    winding_down_ = true;
    std::string none;
    if (write(none) == Write::Failed) return false;
  }
  return lower_.shutdown();
}

}  // namespace petrel
