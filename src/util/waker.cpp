#include "src/util/waker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

namespace petrel {

Waker::~Waker() {
  if (fd_ >= 0) ::close(fd_);
}

int Waker::init(uv_loop_t* loop, Callback cb, void* arg) {
  cb_ = cb;
  arg_ = arg;
  const int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return uv_translate_sys_error(errno);
  int r = uv_poll_init(loop, &poll_, fd);
  if (r != 0) {
    ::close(fd);
    return r;
  }
  fd_ = fd;
  poll_.data = this;
  r = uv_poll_start(&poll_, UV_READABLE, &Waker::onReadable);
  if (r != 0) close();
  return r;
}

void Waker::wake() {
  // The exchange, not a plain load first: its release is what the loop's
  // exchange below acquires, so the loop sees what this thread handed over
  // even when another thread raised the flag.
  if (raised_.exchange(true, std::memory_order_acq_rel)) return;
  const uint64_t one = 1;
  ssize_t n;
  do {
    n = ::write(fd_, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
  // EAGAIN only when the counter is near 2^64: it is readable anyway.
}

void Waker::close() {
  if (fd_ < 0 || closed_) return;
  closed_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
}

void Waker::onReadable(uv_poll_t* h, int, int) {
  auto* w = static_cast<Waker*>(h->data);
  // First the eventfd, then the flag: a wake() after the read raises the
  // flag again and writes again, so the loop comes back.
  uint64_t count;
  while (::read(w->fd_, &count, sizeof count) < 0 && errno == EINTR) {
  }
  w->raised_.exchange(false, std::memory_order_acq_rel);
  w->cb_(w->arg_);
}

}  // namespace petrel
