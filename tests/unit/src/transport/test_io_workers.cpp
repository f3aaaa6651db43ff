// tests/unit/src/transport/test_io_workers.cpp — the flow control between
// the main loop and the worker loops (LoopLimits: unhandled_high,
// backlog_high), with real worker threads and real loopback sockets. The
// test runs the main loop itself, so it can hold the main loop back, or
// hold a worker's commands back, for as long as it likes: a worker stops
// reading once the main loop has its share of input unhandled (8 MiB with
// two loops, 1 MiB with sixteen), the main loop stops taking input while a
// worker has its share of output not yet taken up, both are counted
// (IoWorkers::flow, the metrics), and every byte still arrives, in order.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "src/transport/io_workers.h"

namespace petrel {
namespace {

constexpr auto kGuard = std::chrono::seconds(20);  // the longest any wait may take

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed) >> 3);
  return s;
}

// Joins a client thread however the test ends: a failed assertion returns
// early, and the thread may be blocked on the socket (shut down to free it).
struct Joined {
  std::thread& t;
  int fd;
  ~Joined() {
    if (!t.joinable()) return;
    shutdown(fd, SHUT_RDWR);
    t.join();
  }
};

// The main loop's side: what a Connection would be told.
class Handler final : public StreamHandler {
 public:
  uint8_t* readBuffer(size_t& len, bool) override {
    len = sizeof buf_;
    return buf_;
  }
  bool onStreamData(const uint8_t* data, size_t len) override {
    received.append(reinterpret_cast<const char*>(data), len);
    return true;
  }
  void onStreamWritable(bool) override {}
  void onStreamEnd(StreamEnd) override { ended = true; }
  void onStreamClosed() override { closed = true; }

  std::string received;
  bool ended = false;
  bool closed = false;

 private:
  uint8_t buf_[4096];
};

TEST(LoopLimitsTest, EachLoopGetsAShareOfAFixedTotal) {
  // Two loops get what each loop got before the marks were shared.
  const LoopLimits two = LoopLimits::forLoops(2);
  EXPECT_EQ(two.backlog_high, 8u << 20);
  EXPECT_EQ(two.unhandled_high, 8u << 20);
  EXPECT_EQ(two.unhandled_low, 2u << 20);
  EXPECT_EQ(two.spare_max, 4u << 20);
  // No more than that for fewer loops.
  const LoopLimits one = LoopLimits::forLoops(1);
  EXPECT_EQ(one.backlog_high, 8u << 20);
  EXPECT_EQ(one.spare_max, 4u << 20);
  // Sixteen: an eighth each, so the sum stays where two loops' was.
  const LoopLimits sixteen = LoopLimits::forLoops(16);
  EXPECT_EQ(sixteen.backlog_high, 1u << 20);
  EXPECT_EQ(sixteen.unhandled_high, 1u << 20);
  EXPECT_EQ(sixteen.unhandled_low, 256u << 10);
  EXPECT_EQ(sixteen.spare_max, 512u << 10);
  for (unsigned n : {2u, 3u, 4u, 8u, 16u, 32u}) {
    const LoopLimits l = LoopLimits::forLoops(n);
    EXPECT_LE(n * l.backlog_high, 16u << 20) << n;
    EXPECT_LE(n * l.unhandled_high, 16u << 20) << n;
    EXPECT_LE(n * l.spare_max, 8u << 20) << n;
    EXPECT_LT(l.unhandled_low, l.unhandled_high) << n;
  }
  // A floor, however many loops: each still moves bytes in batches.
  const LoopLimits many = LoopLimits::forLoops(256);
  EXPECT_EQ(many.backlog_high, 256u << 10);
  EXPECT_EQ(many.unhandled_high, 256u << 10);
  EXPECT_EQ(many.spare_max, 256u << 10);
  EXPECT_GT(many.unhandled_low, 0u);
}

// With two loops and with sixteen (each loop's marks an eighth as high).
class IoWorkersTest : public ::testing::TestWithParam<unsigned> {
 protected:
  void SetUp() override {
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    io_ = std::make_unique<IoWorkers>(&loop_, GetParam());
    std::string err;
    ASSERT_TRUE(io_->start(err)) << err;
    // A loopback connection: the client end stays here, the accepted end
    // goes to a worker loop.
    const int lfd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(lfd, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    ASSERT_EQ(listen(lfd, 1), 0);
    ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &alen), 0);
    client_ = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_EQ(connect(client_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    const int fd = accept(lfd, nullptr, nullptr);
    ASSERT_GE(fd, 0);
    close(lfd);
    worker_ = io_->pick();
    ASSERT_NE(worker_, nullptr);
    stream_ = std::make_unique<RemoteStream>(*worker_, fd, nullptr, nullptr);
    stream_->setHandler(&handler_);
    io_->flush();  // Start
  }

  void TearDown() override {
    if (stream_ && !handler_.closed) {
      stream_->close();
      io_->flush();
      runUntil([this] { return handler_.closed; });
    }
    stream_.reset();
    if (client_ >= 0) close(client_);
    io_->stop();
    runUntil([this] { return uv_loop_alive(&loop_) == 0; });
    io_.reset();
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }

  // Runs the main loop until `done`; false when the guard's time is up.
  bool runUntil(const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + kGuard;
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      uv_run(&loop_, UV_RUN_NOWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }

  // Waits, without running the main loop, until `done`.
  static bool waitFor(const std::function<bool()>& done) {
    const auto end = std::chrono::steady_clock::now() + kGuard;
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return true;
  }

  IoWorkers::Flow flow() const {
    for (const IoWorkers::Flow& f : io_->flow())
      if (f.thread == "petrel-io-" + std::to_string(worker_->index())) return f;
    ADD_FAILURE() << "no flow figures for the stream's loop";
    return {};
  }

  uv_loop_t loop_;
  std::unique_ptr<IoWorkers> io_;
  IoWorker* worker_ = nullptr;
  std::unique_ptr<RemoteStream> stream_;
  Handler handler_;
  int client_ = -1;
};

TEST_P(IoWorkersTest, AWorkerStopsReadingWhileTheMainLoopIsBehindOnItsInputAndEveryByteArrives) {
  // Four times what a worker lets wait for the main loop, and more than
  // the sockets' buffers hold, sent with no pause while the main loop does
  // not run.
  const std::string sent = pattern(std::max<size_t>(4 * io_->limits().unhandled_high, 32 << 20), 7);
  std::atomic<size_t> written{0};
  std::thread client([&] {
    size_t off = 0;
    while (off < sent.size()) {
      const ssize_t n = send(client_, sent.data() + off, sent.size() - off, 0);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
      written = off;
    }
  });
  Joined joined{client, client_};
  // The worker reads until its share waits for the main loop, then stops:
  // TCP holds the client back with the rest.
  ASSERT_TRUE(waitFor([&] { return flow().input_pauses == 1; })) << "the worker did not stop reading";
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(flow().input_pauses, 1u);
  EXPECT_LT(written.load(), sent.size()) << "the client was not held back";
  EXPECT_TRUE(handler_.received.empty());
  // The main loop catches up: the worker reads again, and all of it comes,
  // in order.
  ASSERT_TRUE(runUntil([&] { return handler_.received.size() >= sent.size(); }))
      << handler_.received.size() << " of " << sent.size();
  client.join();
  EXPECT_EQ(written.load(), sent.size());
  EXPECT_TRUE(handler_.received == sent) << "the bytes arrived changed or out of order";
  EXPECT_GE(flow().input_pauses, 1u);
  EXPECT_EQ(flow().output_waits, 0u);
}

TEST_P(IoWorkersTest, TheMainLoopTakesNoInputWhileAWorkerIsBehindOnOutputAndEveryByteArrives) {
  ASSERT_TRUE(runUntil([&] { return stream_->handshakeDone(); }));
  // Twice what a worker may have waiting, handed over and held in the
  // main loop's batch: the worker has not taken it up.
  const std::string out = pattern(2 * io_->limits().backlog_high, 3);
  std::string copy = out;
  stream_->write(copy);
  ASSERT_TRUE(worker_->behind());
  // Input from the client meanwhile: the worker passes it on, and the main
  // loop leaves it until the worker has caught up.
  ASSERT_EQ(send(client_, "ping", 4, 0), 4);
  ASSERT_TRUE(runUntil([&] { return flow().output_waits == 1; })) << "the main loop took input from a loop behind";
  EXPECT_TRUE(handler_.received.empty());
  // The main loop handed its output over as it stopped; the worker takes
  // it up and wakes the main loop: the input comes, and the client gets
  // every byte, in order.
  std::string got;
  std::thread client([&] {
    char buf[1 << 16];
    while (got.size() < out.size()) {
      const ssize_t n = recv(client_, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  });
  Joined joined{client, client_};
  ASSERT_TRUE(runUntil([&] { return handler_.received == "ping"; })) << handler_.received.size();
  client.join();
  EXPECT_TRUE(got == out) << got.size() << " of " << out.size() << " bytes, or changed";
  EXPECT_FALSE(worker_->behind());
  EXPECT_EQ(flow().output_waits, 1u);
  EXPECT_EQ(flow().input_pauses, 0u);
}

INSTANTIATE_TEST_SUITE_P(Loops, IoWorkersTest, ::testing::Values(2u, 16u),
                         [](const ::testing::TestParamInfo<unsigned>& i) { return std::to_string(i.param); });

}  // namespace
}  // namespace petrel
