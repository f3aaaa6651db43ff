// The TLS side of Connection: ciphertext read from the socket goes through
// the connection's TlsSession and the plaintext into the same decode path
// as a plain connection (processShared / processBuffered); everything
// queued in out() during a loop turn is encrypted once, at flush time, and
// written with the records OpenSSL produced on its own (handshake, alerts).
// The plain path never reaches this file.
#include <cstring>

#include "src/broker/broker.h"
#include "src/transport/connection.h"
#include "src/util/log.h"
#include "tls/tls_context.h"

namespace petrel {

void Connection::enableTls(const tls::TlsContext& ctx) { tls_ = std::make_unique<tls::TlsSession>(ctx); }

void Connection::onTlsRead(const uint8_t* data, size_t len) {
  const bool was_done = tls_->handshakeDone();
  const auto r = tls_->feed(data, len, [this](const uint8_t* p, size_t n) { return feedPlain(p, n); });
  if (!was_done && tls_->handshakeDone())
    LOG_DEBUG("TLS handshake with %s: %s%s%s", peer().c_str(), tls_->describe().c_str(),
              tls_->hasPeerCommonName() ? ", client certificate CN=" : "",
              tls_->hasPeerCommonName() ? tls_->peerCommonName().c_str() : "");
  switch (r) {
    case tls::TlsSession::Result::Ok:
      if (tls_->hasOutput()) markDirty();
      return;
    case tls::TlsSession::Result::Closed:
      // close_notify from the client: the same as end of stream.
      beginClose();
      return;
    case tls::TlsSession::Result::Error:
      LOG_NOTICE("closing %s: TLS %s", peer().c_str(), tls_->error().c_str());
      // The alert OpenSSL queued goes out before the socket closes.
      closeAfterFlush();
      return;
  }
}

bool Connection::feedPlain(const uint8_t* data, size_t len) {
  if (closing_) return false;
  if (buffered() > 0) {
    // A packet is already partly buffered: complete it there.
    size_t avail;
    uint8_t* dst = decoder().writeSpace(len, avail);
    std::memcpy(dst, data, len);
    decoder().commit(len);
    processBuffered();
  } else {
    processShared(data, len);
  }
  return !closing_;
}

void Connection::flushTls() {
  dirty_ = false;
  if (handle_closed_) return;
  if (!out_.empty()) {
    // Nothing is queued for a client before its handshake completes except
    // on the way to closing, and that output cannot be sent anyway.
    if (tls_->handshakeDone() && !tls_->write(out_.data(), out_.size(), ob().tls_out)) {
      LOG_DEBUG("TLS write to %s failed: %s", peer().c_str(), tls_->error().c_str());
      out_.clear();
      ob().tls_out.clear();
      beginClose();
      return;
    }
    out_.clear();
    if (out_.capacity() > 64 * 1024) std::string().swap(out_);
  }
  if (closing_) tls_->shutdown();
  tls_->drainOutput(ob().tls_out);
  if (writing_ || ob().tls_out.empty()) {
    if (closing_ && !lingering_ && !writing_) endOutput();
    return;
  }
  uv_buf_t b = uv_buf_init(ob().tls_out.data(), static_cast<unsigned>(ob().tls_out.size()));
  int n = uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1);
  if (n == static_cast<int>(ob().tls_out.size())) {
    ob().tls_out.clear();
    trimOutbox();
    if (closing_ && !lingering_) endOutput();
    else notifyWritable();
    return;
  }
  if (n < 0 && n != UV_EAGAIN) {
    LOG_DEBUG("write error to %s: %s", peer().c_str(), uv_strerror(n));
    ob().tls_out.clear();
    beginClose();
    return;
  }
  if (n > 0) ob().tls_out.erase(0, static_cast<size_t>(n));
  ob().wbuf.swap(ob().tls_out);
  ob().tls_out.clear();
  startWrite();
}

}  // namespace petrel
