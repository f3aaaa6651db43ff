#include "src/httpd/http_connection.h"

#include "src/http/request.h"
#include "src/httpd/http_server.h"
#include "src/timers/loop_timers.h"
#include "src/transport/tls_stream.h"
#include "src/util/log.h"

namespace petrel {

HttpConnection::HttpConnection(HttpServer& server) : server_(server), timer_(&HttpConnection::onTimer, this) {
  tcp_.setHandler(this);
}

HttpConnection::~HttpConnection() = default;

void HttpConnection::start(uv_stream_t* listener, const tls::TlsContext* tls) {
  if (tls) {
    tls_ = std::make_unique<TlsStream>(tcp_, *tls);
    tls_->setHandler(this);
  }
  if (tcp_.accept(listener) != 0) return close();
  // The head (and before it the TLS handshake) must come in time.
  arm(HttpServer::kRequestTimeoutMs);
}

void HttpConnection::arm(uint64_t ms) { server_.timers().armAfter(timer_, ms); }

void HttpConnection::onTimer(Timer& t) {
  auto* c = t.owner<HttpConnection>();
  if (c->state_ != State::Linger) LOG_DEBUG("HTTP %s: timed out", c->tcp_.peer().c_str());
  c->close();
}

uint8_t* HttpConnection::readBuffer(size_t& len, bool) { return server_.readBuffer(len); }

bool HttpConnection::onStreamData(const uint8_t* data, size_t len) {
  if (closed_ || state_ == State::Closing || state_ == State::Linger) return false;
  // While an answer is being written, the next head waits here, within
  // the same limit.
  if (state_ == State::Writing && in_.size() + len > HttpServer::kMaxHead) {
    close();
    return false;
  }
  in_.append(reinterpret_cast<const char*>(data), len);
  if (state_ == State::Reading) process();
  return !closed_ && state_ != State::Closing;
}

void HttpConnection::process() {
  if (in_.empty()) return;
  http::Request req;
  size_t used = 0;
  std::string error;
  switch (http::parseRequest(in_, HttpServer::kMaxHead, req, used, error)) {
    case http::Parse::Incomplete:
      return;
    case http::Parse::Error:
      LOG_DEBUG("HTTP %s: %s", tcp_.peer().c_str(), error.c_str());
      return respond(HttpServer::badRequest(error), true);
    case http::Parse::Done:
      break;
  }
  in_.erase(0, used);
  bool last = false;
  std::string answer = server_.answer(req, last);
  respond(std::move(answer), last);
}

void HttpConnection::respond(std::string response, bool close) {
  if (out_.empty()) out_.swap(response);
  else out_ += response;
  if (close) {
    // Nothing more is read; TLS sends close_notify after the answer.
    state_ = State::Closing;
    std::string().swap(in_);
    top().windDown();
  } else {
    state_ = State::Writing;
  }
  // The answer must be taken, and the next head come, in time.
  arm(HttpServer::kRequestTimeoutMs);
  markDirty();
}

void HttpConnection::markDirty() {
  if (dirty_ || closed_) return;
  dirty_ = true;
  server_.scheduleFlush(this);
}

void HttpConnection::flush() {
  dirty_ = false;
  if (closed_) return;
  switch (top().write(out_)) {
    case Stream::Write::InFlight:
      return;  // onStreamWritable() goes on
    case Stream::Write::Failed:
      return close();
    case Stream::Write::Nothing:
    case Stream::Write::Written:
      return written();
  }
}

void HttpConnection::written() {
  if (!out_.empty()) return;
  std::string().swap(out_);
  switch (state_) {
    case State::Writing:
      // The next request, if it came meanwhile.
      state_ = State::Reading;
      return process();
    case State::Closing:
      // Half-close after the last byte; the peer's close (or the linger
      // deadline) ends it.
      state_ = State::Linger;
      arm(HttpServer::kLingerMs);
      if (!top().shutdown()) close();
      return;
    case State::Reading:
    case State::Linger:
      return;
  }
}

void HttpConnection::onStreamWritable(bool ok) {
  if (closed_) return;
  if (!ok) return close();
  flush();
}

void HttpConnection::onStreamEnd(StreamEnd why) {
  if (closed_) return;
  if (why == StreamEnd::Failed && state_ != State::Linger) {
    // A TLS error: its alert goes out first.
    state_ = State::Closing;
    std::string().swap(in_);
    top().windDown();
    arm(HttpServer::kLingerMs);
    return markDirty();
  }
  close();
}

void HttpConnection::close() {
  if (closed_) return;
  closed_ = true;
  timer_.cancel();
  top().close();
}

void HttpConnection::onStreamClosed() { server_.onClosed(this); }

}  // namespace petrel
