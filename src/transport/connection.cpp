#include "src/transport/connection.h"

#include <algorithm>
#include <cstring>

#include "mqtt/encoder.h"
#include "src/broker/broker.h"
#include "src/util/log.h"
#include "src/sessions/session.h"

namespace petrel {

Connection::Connection(Broker& broker, uint32_t max_packet_size)
    : broker_(broker) {
  tcp_.data = this;
}

Connection::~Connection() = default;

std::string Connection::peer() const {
  sockaddr_storage ss;
  int len = sizeof ss;
  char host[64] = "?";
  int port = 0;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      uv_ip6_name(a, host, sizeof host);
      port = ntohs(a->sin6_port);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      uv_ip4_name(a, host, sizeof host);
      port = ntohs(a->sin_port);
    }
  }
  return std::string(host) + ":" + std::to_string(port);
}

mqtt::StreamDecoder& Connection::decoder() {
  if (!decoder_) decoder_ = std::make_unique<mqtt::StreamDecoder>(broker_.maxPacketSizeFor(*this));
  return *decoder_;
}

bool Connection::start(uv_stream_t* server) {
  uv_tcp_init(server->loop, &tcp_);
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0) {
    beginClose();
    return false;
  }
  uv_tcp_nodelay(&tcp_, 1);
  last_rx_ms = accepted_ms = uv_now(server->loop);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), &Connection::onAlloc, &Connection::onRead);
  return true;
}

void Connection::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(h->data);
  // A partial packet is completed in the connection's own buffer; otherwise
  // read into the loop's shared buffer and decode in place, so idle
  // connections hold no receive buffer at all.
  if (c->buffered() > 0 && !c->tls_) {
    size_t avail;
    uint8_t* p = c->decoder().writeSpace(16 * 1024, avail);
    buf->base = reinterpret_cast<char*>(p);
    buf->len = avail;
    c->reading_into_decoder_ = true;
  } else {
    size_t n;
    buf->base = reinterpret_cast<char*>(c->broker_.sharedReadBuffer(n));
    buf->len = n;
    c->reading_into_decoder_ = false;
  }
}

void Connection::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* c = static_cast<Connection*>(s->data);
  if (nread == 0) return;
  if (nread < 0) {
    if (nread != UV_EOF) LOG_DEBUG("read error from %s: %s", c->peer().c_str(), uv_strerror(nread));
    c->beginClose();
    return;
  }
  if (c->closing_) return;
  c->last_rx_ms = uv_now(s->loop);
  if (c->tls_) {
    c->onTlsRead(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
  } else if (c->reading_into_decoder_) {
    c->decoder().commit(static_cast<size_t>(nread));
    c->processBuffered();
  } else {
    c->processShared(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
  }
}

void Connection::processShared(const uint8_t* data, size_t len) {
  size_t pos = 0;
  // [MQTT-3.1.0-1] the first packet must be CONNECT: a stream that starts
  // with anything else is closed at its first byte, without waiting for
  // (and buffering) the body it announces.
  if (!connected && len > 0 && (data[0] >> 4) != static_cast<uint8_t>(mqtt::PacketType::Connect) &&
      buffered() == 0) {
    mqtt::Frame f;
    f.type = static_cast<mqtt::PacketType>(data[0] >> 4);
    broker_.onFrame(*this, f);
    return;
  }
  while (pos < len && !closing_) {
    mqtt::Frame f;
    auto st = mqtt::peekFrame(data + pos, len - pos, broker_.maxPacketSizeFor(*this), f);
    if (st == mqtt::FrameStatus::Ok) {
      pos += f.total_len;
      if (!handleFrame(f)) return;
      continue;
    }
    if (st == mqtt::FrameStatus::Incomplete) {
      // Keep the tail for the next read.
      size_t avail;
      uint8_t* p = decoder().writeSpace(len - pos, avail);
      std::memcpy(p, data + pos, len - pos);
      decoder().commit(len - pos);
      return;
    }
    broker_.onFramingError(*this, st == mqtt::FrameStatus::TooLarge);
    return;
  }
}

void Connection::processBuffered() {
  while (!closing_) {
    mqtt::Frame f;
    auto st = decoder().next(f);
    if (st == mqtt::FrameStatus::Ok) {
      if (!handleFrame(f)) return;
      continue;
    }
    if (st == mqtt::FrameStatus::Incomplete) break;
    broker_.onFramingError(*this, st == mqtt::FrameStatus::TooLarge);
    return;
  }
  // Nothing partial left: give the buffer back.
  if (decoder_->buffered() == 0) decoder_.reset();
  else decoder_->compact();
}

bool Connection::handleFrame(const mqtt::Frame& f) {
  broker_.onFrame(*this, f);
  return !closing_;
}

void Connection::markDirty() {
  if (!dirty_ && !handle_closed_) {
    dirty_ = true;
    broker_.scheduleFlush(this);
  }
}

void Connection::flush() {
  if (tls_) return flushTls();
  dirty_ = false;
  if (writing_ || out_.empty() || handle_closed_) {
    if (closing_ && !lingering_ && !writing_ && !handle_closed_) endOutput();
    return;
  }
  uv_buf_t b = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
  int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
  if (n == static_cast<int>(out_.size())) {
    out_.clear();
    if (out_.capacity() > 64 * 1024) std::string().swap(out_);
    if (closing_ && !lingering_) endOutput();
    else notifyWritable();
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    LOG_DEBUG("write error to %s: %s", peer().c_str(), uv_strerror(n));
    out_.clear();
    beginClose();
    return;
  }
  if (n > 0) out_.erase(0, static_cast<size_t>(n));
  ob().wbuf.swap(out_);
  out_.clear();
  startWrite();
}

void Connection::startWrite() {
  uv_buf_t b = uv_buf_init(ob().wbuf.data(), static_cast<unsigned>(ob().wbuf.size()));
  writing_ = true;
  if (!write_req_) {
    write_req_ = std::make_unique<uv_write_t>();
    write_req_->data = this;
  }
  uv_write(write_req_.get(), reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1, &Connection::onWrite);
}

void Connection::onWrite(uv_write_t* req, int status) {
  auto* c = static_cast<Connection*>(req->data);
  c->writing_ = false;
  c->ob().wbuf.clear();
  c->trimOutbox();
  if (status < 0) {
    c->out_.clear();
    c->beginClose();
    return;
  }
  if (!c->out_.empty() || (c->ob_ && !c->ob_->tls_out.empty())) {
    c->flush();
  } else if (c->closing_ && !c->lingering_) {
    c->endOutput();
  }
  c->broker_.accountOutput(*c);
  // Whether or not more output followed, the kernel took a large write:
  // messages that waited for room may go now. (Under a steady QoS 0 stream
  // the buffer is never empty when a write completes; waiting for "empty"
  // stranded QoS 1/2 messages in the session queue.)
  if (!c->closing_) c->notifyWritable();
}

void Connection::notifyWritable() {
  if (want_writable && !closing_ && pendingOutput() < kOutputHighWater) {
    want_writable = false;
    broker_.onWritable(*this);
  }
}

void Connection::holdSince(OutMark mark, uint64_t ticket, const AckGatePtr& gate) {
  ob().held.holdSince(mark, out_, ticket, gate);
}

bool Connection::release(uint64_t committed) {
  if (!ob_) return false;
  if (ob_->held.release(committed, out_)) markDirty();
  const bool more = !ob_->held.empty();
  trimOutbox();
  return more;
}

void Connection::closeAfterFlush() {
  if (closing_) return;
  // Reading goes on (and discards) until the close: see endOutput().
  closing_ = true;
  broker_.onConnectionLost(*this);
  markDirty();
}

void Connection::endOutput() {
  if (handle_closed_ || half_closed_) return;
  // The last packet (DISCONNECT, or a CONNACK refusing the client) is
  // written. Closing now would make the kernel answer the client's
  // in-flight bytes with a reset, and a client still sending sees a broken
  // pipe instead of our reason code. So: half-close (FIN after the data),
  // read and discard until the client closes, and close after
  // kHalfCloseLingerMs at the latest (Broker::sweep).
  if (broker_.shuttingDown()) return beginClose();  // no sweep runs any more
  half_closed_ = true;
  last_rx_ms = uv_now(tcp_.loop);
  shutdown_req_ = std::make_unique<uv_shutdown_t>();
  shutdown_req_->data = this;
  if (uv_shutdown(shutdown_req_.get(), reinterpret_cast<uv_stream_t*>(&tcp_), &Connection::onShutdown) != 0)
    beginClose();
}

void Connection::onShutdown(uv_shutdown_t*, int) {
  // Nothing to do: the client's close (EOF) or the sweep's deadline ends
  // the connection.
}

void Connection::closeWhenPeerDoes(uint64_t now_ms) {
  if (closing_) return;
  // The client said DISCONNECT and closes its end next: let it close first,
  // so that the TIME_WAIT state stays on its side. A broker that closes
  // first collects a TIME_WAIT socket per client reconnect, which on one
  // host (or behind a NAT) exhausts the ports new connections need. The
  // sweep closes it anyway if the client does not, after a second.
  closing_ = true;
  lingering_ = true;
  last_rx_ms = now_ms;
  broker_.onConnectionLost(*this);
  markDirty();
}

void Connection::disconnect(mqtt::Reason reason) {
  if (closing_) return;
  if (connected && version == mqtt::Version::V5) {
    mqtt::Disconnect d;
    d.reason = reason;
    mqtt::encode(d, version, out_);  // not behind held output: it is the last word
    markDirty();
  }
  closeAfterFlush();
}

void Connection::beginClose() {
  if (handle_closed_) return;
  lingering_ = false;  // closing for real now
  if (!closing_) {
    closing_ = true;
    broker_.onConnectionLost(*this);
  }
  if (writing_) return;  // onWrite finishes the close
  handle_closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Connection::onClose);
}

void Connection::onClose(uv_handle_t* h) {
  auto* c = static_cast<Connection*>(h->data);
  c->broker_.onConnectionClosed(c);
}

}  // namespace petrel
