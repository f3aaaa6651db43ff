// src/transport/tcp_stream.h — the bottom of a stream stack: one TCP socket
// (uv_tcp_t), accepted from a listener or connected to a remote address
// (client mode, for bridges).
//
// Reads go to the buffer the handler names for each read (the loop's shared
// buffer, or its decoder's free tail), so an idle socket holds no receive
// buffer. A write is tried at once with uv_try_write; only what the kernel
// does not take goes to uv_write, with the request and the bytes it needs
// allocated for that write alone. Nothing else is allocated: an idle stream
// is this object and nothing more.
#pragma once

#include <uv.h>

#include <memory>
#include <string>

#include "src/transport/stream.h"

namespace petrel {

// "address:port" of a peer address (`ok` false: "?:0"), for logs.
std::string peerAddress(const sockaddr_storage& ss, bool ok);

class TcpStream final : public Stream {
 public:
  TcpStream() { tcp_.data = this; }
  // The handle must be closed (onStreamClosed seen), or never opened.
  ~TcpStream() override = default;

  // Takes the next connection from a listener and starts reading. 0, or a
  // libuv error; either way the socket is open and ends with close().
  int accept(uv_stream_t* server);
  // Takes an accepted socket (handed over from another loop) and starts
  // reading. 0, or a libuv error; either way the socket is owned here and
  // ends with close().
  int adopt(uv_loop_t* loop, int fd);
  // Client mode: connects to an IP address (v4 or v6 literal; name lookup is
  // the caller's) and starts reading once connected, then tells the handler
  // (onStreamConnected). 0, or a libuv error; either way the socket is open
  // and ends with close().
  int connect(uv_loop_t* loop, const char* ip, int port);
  int connect(uv_loop_t* loop, const sockaddr* addr);

  Write write(std::string& data) override;
  bool writing() const override { return write_ != nullptr; }
  size_t pendingBytes() const override { return write_ ? write_->buf.size() : 0; }
  void windDown() override { discarding_ = true; }
  bool shutdown() override;
  void close() override;
  std::string peer() const override;

  uv_tcp_t* handle() { return &tcp_; }
  // Stops / resumes reading from the socket (the kernel buffers meanwhile,
  // and then the peer waits).
  void pauseReading() {
    if (open_ && !closed_) uv_read_stop(stream());
  }
  void resumeReading() {
    if (open_ && !closed_) startReading();
  }
  uv_loop_t* loop() const { return tcp_.loop; }
  // Reads now, whether reading is on or paused, what the kernel holds for
  // this socket at this moment (no more: a peer that keeps writing cannot
  // keep the call going), and hands it to the handler as a read would.
  // The end of input is left to the next read. True when something was
  // handed up and the handler took it (its onStreamData returned true).
  bool readNow();
  // readNow(), then, when something was read, the handler's
  // onStreamInputDone as after a read of the loop's.
  bool pollInput() {
    if (!readNow()) return false;
    handler_->onStreamInputDone();
    return true;
  }

 private:
  static void onAlloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void onWrite(uv_write_t* req, int status);
  static void onShutdown(uv_shutdown_t* req, int status);
  static void onConnect(uv_connect_t* req, int status);
  static void onClose(uv_handle_t* h);
  int open(uv_loop_t* loop);
  int startReading();
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  uv_tcp_t tcp_;
  // A write the kernel did not take at once: the request and the bytes it
  // points to, alive until its callback; null otherwise.
  struct PendingWrite {
    uv_write_t req;
    std::string buf;
  };
  std::unique_ptr<PendingWrite> write_;
  bool discarding_ = false;  // windDown()
  bool open_ = false;        // the handle is initialised
  bool closed_ = false;      // close() was called
};

}  // namespace petrel
