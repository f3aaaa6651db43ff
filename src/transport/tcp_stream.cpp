// src/transport/tcp_stream.cpp — one TCP socket under a stream stack: reads
// into the handler's buffer, writes with uv_try_write first and uv_write for
// the rest, half-close, close, and client-mode connect.
#include "src/transport/tcp_stream.h"

#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "src/util/log.h"

namespace petrel {

int TcpStream::open(uv_loop_t* loop) {
  // uv_tcp_init creates no socket yet (that is accept's or connect's job),
  // so it cannot fail for lack of resources.
  const int r = uv_tcp_init(loop, &tcp_);
  if (r == 0) open_ = true;
  return r;
}

int TcpStream::startReading() {
  return uv_read_start(stream(), &TcpStream::onAlloc, &TcpStream::onRead);
}

int TcpStream::accept(uv_stream_t* server) {
  int r = open(server->loop);
  if (r == 0) r = uv_accept(server, stream());
  if (r != 0) return r;
  uv_tcp_nodelay(&tcp_, 1);
  return startReading();
}

int TcpStream::adopt(uv_loop_t* loop, int fd) {
  int r = open(loop);
  if (r == 0) r = uv_tcp_open(&tcp_, fd);
  if (r != 0) {
    ::close(fd);  // not the handle's: uv_tcp_open did not take it
    return r;
  }
  uv_tcp_nodelay(&tcp_, 1);
  return startReading();
}

int TcpStream::connect(uv_loop_t* loop, const char* ip, int port) {
  sockaddr_storage ss{};
  if (uv_ip4_addr(ip, port, reinterpret_cast<sockaddr_in*>(&ss)) != 0 &&
      uv_ip6_addr(ip, port, reinterpret_cast<sockaddr_in6*>(&ss)) != 0) {
    open(loop);  // the contract: open either way, ended by close()
    return UV_EINVAL;
  }
  return connect(loop, reinterpret_cast<const sockaddr*>(&ss));
}

int TcpStream::connect(uv_loop_t* loop, const sockaddr* addr) {
  const int r = open(loop);
  if (r != 0) return r;
  auto req = std::make_unique<uv_connect_t>();
  req->data = this;
  const int c = uv_tcp_connect(req.get(), &tcp_, addr, &TcpStream::onConnect);
  if (c == 0) req.release();  // onConnect owns it
  return c;
}

void TcpStream::onConnect(uv_connect_t* req, int status) {
  std::unique_ptr<uv_connect_t> own(req);
  auto* s = static_cast<TcpStream*>(req->data);
  // A close() before the connection was made ends here with UV_ECANCELED.
  if (status == 0) {
    uv_tcp_nodelay(&s->tcp_, 1);
    status = s->startReading();
  }
  s->handler_->onStreamConnected(status);
}

void TcpStream::onAlloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* s = static_cast<TcpStream*>(h->data);
  size_t n = 0;
  buf->base = reinterpret_cast<char*>(s->handler_->readBuffer(n, false));
  buf->len = n;
}

void TcpStream::onRead(uv_stream_t* st, ssize_t nread, const uv_buf_t* buf) {
  auto* s = static_cast<TcpStream*>(st->data);
  if (nread == 0) return;
  if (nread < 0) {
    if (nread != UV_EOF) LOG_DEBUG("read error from %s: %s", s->peer().c_str(), uv_strerror(nread));
    s->handler_->onStreamEnd(StreamEnd::PeerClosed);
    return;
  }
  if (s->discarding_) return;
  if (s->handler_->onStreamData(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread)))
    s->handler_->onStreamInputDone();
}

bool TcpStream::readNow() {
  if (!open_ || closed_) return false;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&tcp_), &fd) != 0) return false;
  // One receive first, with no question of how much waits: a short one
  // (the common case, a few acknowledgements) took all the kernel held,
  // and an empty socket costs this one call. Only a full buffer asks how
  // much more there is, and reads no more than that.
  size_t n = 0;
  uint8_t* buf = handler_->readBuffer(n, false);
  if (n == 0) return false;
  ssize_t got = recv(fd, buf, n, MSG_DONTWAIT);
  if (got <= 0) return false;  // nothing, an error or the end: the next read sees it
  const bool all = static_cast<size_t>(got) < n;
  bool taken = false;
  if (!discarding_) {
    if (!handler_->onStreamData(buf, static_cast<size_t>(got))) return false;
    taken = true;
  }
  if (all) return taken;
  int queued = 0;
  if (ioctl(fd, FIONREAD, &queued) != 0 || queued <= 0) return taken;
  auto left = static_cast<size_t>(queued);
  while (left > 0) {
    buf = handler_->readBuffer(n, false);
    if (n == 0) return taken;
    got = recv(fd, buf, std::min(n, left), MSG_DONTWAIT);
    if (got <= 0) return taken;
    left -= static_cast<size_t>(got);
    if (discarding_) continue;
    if (!handler_->onStreamData(buf, static_cast<size_t>(got))) return false;
    taken = true;
  }
  return taken;
}

Stream::Write TcpStream::write(std::string& data) {
  // One write at a time: what comes meanwhile stays with the caller and
  // goes out in one piece when this one is done.
  if (write_) return Write::InFlight;
  if (data.empty()) return Write::Nothing;
  uv_buf_t b = uv_buf_init(data.data(), static_cast<unsigned>(data.size()));
  const int n = uv_try_write(stream(), &b, 1);
  if (n == static_cast<int>(data.size())) {
    data.clear();
    return Write::Written;
  }
  if (n < 0 && n != UV_EAGAIN) {
    LOG_DEBUG("write error to %s: %s", peer().c_str(), uv_strerror(n));
    data.clear();
    return Write::Failed;
  }
  if (n > 0) data.erase(0, static_cast<size_t>(n));
  // The rest waits in the kernel's stead: move the caller's bytes, do not
  // copy them (the caller gets an empty string back).
  write_ = std::make_unique<PendingWrite>();
  write_->req.data = this;
  write_->buf.swap(data);
  b = uv_buf_init(write_->buf.data(), static_cast<unsigned>(write_->buf.size()));
  const int r = uv_write(&write_->req, stream(), &b, 1, &TcpStream::onWrite);
  if (r != 0) {
    LOG_DEBUG("write error to %s: %s", peer().c_str(), uv_strerror(r));
    write_.reset();
    return Write::Failed;
  }
  return Write::InFlight;
}

void TcpStream::onWrite(uv_write_t* req, int status) {
  auto* s = static_cast<TcpStream*>(req->data);
  // libuv is done with the request: free it and the bytes before the
  // handler writes again (an idle stream holds neither).
  s->write_.reset();
  s->handler_->onStreamWritable(status >= 0);
}

bool TcpStream::shutdown() {
  auto req = std::make_unique<uv_shutdown_t>();
  if (uv_shutdown(req.get(), stream(), &TcpStream::onShutdown) != 0) return false;
  req.release();  // onShutdown owns it; libuv calls it on close at the latest
  return true;
}

void TcpStream::onShutdown(uv_shutdown_t* req, int) {
  // Nothing to do: the peer's close (EOF), or the owner's deadline, ends
  // the connection.
  std::unique_ptr<uv_shutdown_t> own(req);
}

void TcpStream::close() {
  if (!open_ || closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &TcpStream::onClose);
}

void TcpStream::onClose(uv_handle_t* h) {
  static_cast<TcpStream*>(h->data)->handler_->onStreamClosed();
}

std::string TcpStream::peer() const {
  sockaddr_storage ss;
  int len = sizeof ss;
  const bool ok = open_ && uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&ss), &len) == 0;
  return peerAddress(ss, ok);
}

std::string peerAddress(const sockaddr_storage& ss, bool ok) {
  char host[64] = "?";
  int port = 0;
  if (ok && ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    uv_ip6_name(a, host, sizeof host);
    port = ntohs(a->sin6_port);
  } else if (ok) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    uv_ip4_name(a, host, sizeof host);
    port = ntohs(a->sin_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

}  // namespace petrel
