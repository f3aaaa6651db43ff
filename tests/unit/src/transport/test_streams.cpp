// tests/unit/src/transport/test_streams.cpp — the stream stack over real
// loopback sockets on a real libuv loop: a TcpStream client connected to a
// TcpStream accepted from a listener, bytes both ways, writes too large for
// the kernel to take at once, half-close and close as the peer sees them,
// a read outside the loop (readNow) with reading on or paused;
// TLS stacked on TCP, server and client side, against each other and against
// a plain OpenSSL client. Every wait is bounded (TestLoop::runUntil), so a
// broken stream fails a test rather than hanging it.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <uv.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "src/transport/tcp_stream.h"
#include "src/transport/tls_stream.h"
#include "tests/unit/tls/test_certs.h"
#include "tls/tls_context.h"

namespace petrel {
namespace {

constexpr uint64_t kGuardMs = 15000;  // the longest any wait may take

// A loop that wakes up at least every 10 ms, so a bounded wait can give up.
class TestLoop {
 public:
  TestLoop() {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &tick_);
    uv_timer_start(
        &tick_, [](uv_timer_t*) {}, 10, 10);
  }
  ~TestLoop() {
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    for (int i = 0; i < 1000 && uv_run(&loop_, UV_RUN_NOWAIT) != 0; ++i) {
    }
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }
  uv_loop_t* get() { return &loop_; }
  // Runs the loop until `done` or the guard's time is up; false on timeout.
  bool runUntil(const std::function<bool()>& done, uint64_t ms = kGuardMs) {
    uv_update_time(&loop_);
    const uint64_t end = uv_now(&loop_) + ms;
    while (!done()) {
      if (uv_now(&loop_) >= end) return false;
      uv_run(&loop_, UV_RUN_ONCE);
    }
    return true;
  }

 private:
  uv_loop_t loop_;
  uv_timer_t tick_;
};

// One end of a connection: a TcpStream, optionally a TLS layer on it, and
// the handler on top, which records what it sees and writes the way
// Connection does (one buffer, written again when a write in flight ends).
class End final : public StreamHandler {
 public:
  explicit End(const tls::TlsContext* tls_ctx = nullptr) {
    tcp.setHandler(this);
    if (tls_ctx) {
      tls = std::make_unique<TlsStream>(tcp, *tls_ctx);
      tls->setHandler(this);
    }
  }
  Stream& top() { return tls ? static_cast<Stream&>(*tls) : tcp; }

  Stream::Write send(const std::string& bytes) {
    out += bytes;
    return flush();
  }
  Stream::Write flush() {
    const Stream::Write r = top().write(out);
    results.push_back(r);
    return r;
  }
  void close() {
    if (open && !closed) top().close();
  }

  // StreamHandler
  uint8_t* readBuffer(size_t& len, bool transformed) override {
    ++reads;
    saw_transformed = saw_transformed || transformed;
    len = read_size;
    return buf;
  }
  bool onStreamData(const uint8_t* data, size_t len) override {
    if (!tls) {
      EXPECT_EQ(data, buf) << "plain TCP reads into the handler's buffer";
    }
    received.append(reinterpret_cast<const char*>(data), len);
    events += 'D';
    if (on_data) on_data();
    return true;
  }
  void onStreamActivity() override { ++activity; }
  void onStreamInputDone() override {
    events += 'I';
    if (on_input_done) on_input_done();
  }
  void onStreamOutput() override { flush(); }
  void onStreamWritable(bool ok) override {
    ++writable;
    write_ok = write_ok && ok;
    if (ok && !out.empty()) flush();
  }
  void onStreamEnd(StreamEnd why) override {
    ended = true;
    end_why = why;
  }
  void onStreamClosed() override { closed = true; }
  void onStreamConnected(int status) override {
    connected = status;
    if (on_connected) on_connected();
  }

  TcpStream tcp;
  std::unique_ptr<TlsStream> tls;
  std::string out;       // output not yet taken by the stream
  std::string received;  // plaintext seen
  std::vector<Stream::Write> results;
  std::function<void()> on_data, on_connected, on_input_done;
  std::string events;  // 'D' onStreamData, 'I' onStreamInputDone, in order
  uint8_t buf[64 * 1024];
  size_t read_size = sizeof buf;  // what each read may take
  size_t reads = 0;
  size_t activity = 0;
  size_t writable = 0;
  bool saw_transformed = false;
  bool write_ok = true;
  bool open = false;
  bool ended = false;
  bool closed = false;
  StreamEnd end_why = StreamEnd::PeerClosed;
  int connected = 1;  // not yet told
};

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed) >> 3);
  return s;
}

class StreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    listener_ = std::make_unique<uv_tcp_t>();
    ASSERT_EQ(uv_tcp_init(loop_.get(), listener_.get()), 0);
    listener_->data = this;
    sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    ASSERT_EQ(uv_tcp_bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), 0), 0);
    ASSERT_EQ(
        uv_listen(reinterpret_cast<uv_stream_t*>(listener_.get()), 16, &StreamTest::onConnection),
        0);
    sockaddr_storage ss;
    int len = sizeof ss;
    uv_tcp_getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    port_ = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  }
  void TearDown() override {
    // Every socket is closed and its close seen before the ends go away.
    for (auto& e : ends_) e->close();
    EXPECT_TRUE(loop_.runUntil([&] {
      for (auto& e : ends_)
        if (e->open && !e->closed) return false;
      return true;
    }));
    uv_close(reinterpret_cast<uv_handle_t*>(listener_.release()),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    loop_.runUntil([] { return false; }, 20);
    ends_.clear();
  }
  static void onConnection(uv_stream_t* server, int status) {
    auto* t = static_cast<StreamTest*>(server->data);
    ASSERT_EQ(status, 0);
    End* e = t->add(t->server_ctx_);
    e->open = true;
    EXPECT_EQ(e->tcp.accept(server), 0);
    t->accepted_.push_back(e);
  }
  End* add(const tls::TlsContext* ctx = nullptr) {
    ends_.push_back(std::make_unique<End>(ctx));
    return ends_.back().get();
  }
  // A client end connected to the listener, and the end the listener
  // accepted for it.
  std::pair<End*, End*> connectPair(const tls::TlsContext* client_ctx = nullptr,
                                    const char* server_name = nullptr) {
    End* c = add(client_ctx);
    if (server_name) {
      EXPECT_TRUE(c->tls->setServerName(server_name));
    }
    c->open = true;
    EXPECT_EQ(c->tcp.connect(loop_.get(), "127.0.0.1", port_), 0);
    const size_t before = accepted_.size();
    // A TLS client is told only once its handshake is done: the test waits.
    EXPECT_TRUE(
        loop_.runUntil([&] { return (c->tls || c->connected != 1) && accepted_.size() > before; }));
    return {c, accepted_.size() > before ? accepted_.back() : nullptr};
  }

  // `s` answers from onStreamInputDone, as Connection does when a
  // subscriber's window is full, with what it received since it last did;
  // `c` sends `bytes` and must get all of them back.
  void echoThroughInputDone(End* c, End* s, const std::string& bytes) {
    size_t echoed = 0;
    s->on_input_done = [s, &echoed] {
      s->send(s->received.substr(echoed));
      echoed = s->received.size();
    };
    c->send(bytes);
    EXPECT_TRUE(loop_.runUntil([&] { return c->received.size() >= bytes.size(); }));
    EXPECT_TRUE(c->received == bytes);
    s->on_input_done = nullptr;
  }

  TestLoop loop_;
  std::unique_ptr<uv_tcp_t> listener_;
  int port_ = 0;
  const tls::TlsContext* server_ctx_ = nullptr;  // TLS on accepted ends
  std::vector<std::unique_ptr<End>> ends_;
  std::vector<End*> accepted_;
};

TEST_F(StreamTest, ClientConnectsAndBytesGoBothWays) {
  const auto ends = connectPair();
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(c->connected, 0);
  EXPECT_EQ(c->send("hello"), Stream::Write::Written);
  EXPECT_EQ(c->out, "");
  ASSERT_TRUE(loop_.runUntil([&] { return s->received == "hello"; }));
  EXPECT_EQ(s->send("world"), Stream::Write::Written);
  ASSERT_TRUE(loop_.runUntil([&] { return c->received == "world"; }));
  // Plain TCP reads into the buffer the handler names, untransformed.
  EXPECT_GT(s->reads, 0u);
  EXPECT_FALSE(s->saw_transformed);
  EXPECT_EQ(s->tcp.peer().rfind("127.0.0.1:", 0), 0u) << s->tcp.peer();
  EXPECT_EQ(c->tcp.peer(), "127.0.0.1:" + std::to_string(port_));
  // Nothing to send, nothing in flight.
  EXPECT_EQ(c->flush(), Stream::Write::Nothing);
  EXPECT_FALSE(c->tcp.writing());
  EXPECT_EQ(c->tcp.pendingBytes(), 0u);
}

TEST_F(StreamTest, LargeWritesGoOutThroughUvWriteAfterAPartialTryWrite) {
  const auto ends = connectPair();
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  // Small kernel buffers make sure the first uv_try_write is partial.
  int small = 64 * 1024;
  uv_send_buffer_size(reinterpret_cast<uv_handle_t*>(c->tcp.handle()), &small);
  const std::string big = pattern(8 * 1024 * 1024 + 3, 1);
  ASSERT_EQ(c->send(big), Stream::Write::InFlight);
  EXPECT_TRUE(c->tcp.writing());
  EXPECT_GT(c->tcp.pendingBytes(), 0u);
  EXPECT_LT(c->tcp.pendingBytes(), big.size());  // the kernel took a part at once
  EXPECT_TRUE(c->out.empty());                   // moved to the stream, not copied back
  // While the write is in flight the stream takes nothing more: the owner's
  // buffer keeps it, and it goes out once the write is done.
  EXPECT_EQ(c->send("tail"), Stream::Write::InFlight);
  EXPECT_EQ(c->out, "tail");
  ASSERT_TRUE(loop_.runUntil([&] { return s->received.size() == big.size() + 4; }));
  EXPECT_TRUE(s->received == big + "tail");
  EXPECT_GE(c->writable, 1u);
  EXPECT_TRUE(c->write_ok);
  ASSERT_TRUE(loop_.runUntil([&] { return !c->tcp.writing(); }));
  EXPECT_EQ(c->tcp.pendingBytes(), 0u);

  // And the other way, from the accepted end.
  const std::string back = pattern(5 * 1024 * 1024, 2);
  s->send(back);
  ASSERT_TRUE(loop_.runUntil([&] { return c->received.size() == back.size(); }));
  EXPECT_TRUE(c->received == back);
}

TEST_F(StreamTest, HalfCloseIsSeenByThePeerWhichCanStillAnswer) {
  const auto ends = connectPair();
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  c->send("last words");
  ASSERT_TRUE(c->tcp.shutdown());
  ASSERT_TRUE(loop_.runUntil([&] { return s->ended; }));
  EXPECT_EQ(s->received, "last words");  // the data came before the FIN
  EXPECT_EQ(s->end_why, StreamEnd::PeerClosed);
  // The half-closed end still reads.
  EXPECT_EQ(s->send("answer"), Stream::Write::Written);
  ASSERT_TRUE(loop_.runUntil([&] { return c->received == "answer"; }));
  EXPECT_FALSE(c->ended);
  s->close();
  ASSERT_TRUE(loop_.runUntil([&] { return s->closed && c->ended; }));
}

TEST_F(StreamTest, CloseIsSeenByThePeer) {
  const auto ends = connectPair();
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  s->close();
  ASSERT_TRUE(loop_.runUntil([&] { return c->ended; }));
  EXPECT_TRUE(s->closed);
  EXPECT_EQ(c->end_why, StreamEnd::PeerClosed);
}

TEST_F(StreamTest, WindingDownDiscardsInputButSeesThePeersClose) {
  const auto ends = connectPair();
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  s->tcp.windDown();
  c->send("ignored");
  c->close();
  ASSERT_TRUE(loop_.runUntil([&] { return s->ended; }));
  EXPECT_EQ(s->received, "");
}

// The kernel holds `n` bytes of input for `e`'s socket (bounded wait).
bool kernelHolds(End* e, int n) {
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(e->tcp.handle()), &fd) != 0) return false;
  for (int i = 0; i < 1500; ++i) {
    int queued = 0;
    if (ioctl(fd, FIONREAD, &queued) == 0 && queued == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

TEST_F(StreamTest, ReadNowTakesWhatTheKernelHoldsWhetherReadingIsOnOrPaused) {
  // What the poller of full windows and a worker's Sync rely on: all the
  // input there is at the moment of the call, in order, past the size of
  // one read buffer, and nothing when there is none.
  const auto ends = connectPair();
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  s->tcp.pauseReading();
  EXPECT_FALSE(s->tcp.readNow());
  EXPECT_EQ(s->reads, 1u);  // one receive that found nothing, no more
  EXPECT_EQ(s->events, "");

  // Less than a buffer: one receive, and onStreamInputDone only through
  // pollInput.
  c->send("acks");
  ASSERT_TRUE(kernelHolds(s, 4));
  EXPECT_TRUE(s->tcp.readNow());
  EXPECT_EQ(s->received, "acks");
  EXPECT_EQ(s->events, "D");
  c->send("more");
  ASSERT_TRUE(kernelHolds(s, 4));
  EXPECT_TRUE(s->tcp.pollInput());
  EXPECT_EQ(s->received, "acksmore");
  EXPECT_EQ(s->events, "DDI");

  // Five buffers' worth and a bit (small ones here, so that the kernel
  // holds it all), waiting while reading is paused: one call takes all of
  // it.
  s->read_size = 4096;
  const std::string big = pattern(5 * s->read_size + 1000, 9);
  c->send(big);
  ASSERT_TRUE(loop_.runUntil([&] { return c->out.empty() && !c->tcp.writing(); }));
  ASSERT_TRUE(kernelHolds(s, static_cast<int>(big.size())));
  s->received.clear();
  const size_t reads = s->reads;
  EXPECT_TRUE(s->tcp.readNow());
  EXPECT_EQ(s->received.size(), big.size());
  EXPECT_TRUE(s->received == big) << "the bytes read changed or out of order";
  EXPECT_EQ(s->reads - reads, 6u);
  EXPECT_TRUE(kernelHolds(s, 0));

  // The end of input is left to the loop's next read.
  c->close();
  ASSERT_TRUE(loop_.runUntil([&] { return c->closed; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(s->tcp.readNow());
  EXPECT_FALSE(s->ended);
  s->tcp.resumeReading();
  ASSERT_TRUE(loop_.runUntil([&] { return s->ended; }));
  EXPECT_EQ(s->end_why, StreamEnd::PeerClosed);
}

TEST_F(StreamTest, ConnectFailuresAreReportedAndTheStreamStillCloses) {
  // A port nobody listens on: bind one, note it, close it.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  End* c = add();
  c->open = true;
  ASSERT_EQ(c->tcp.connect(loop_.get(), reinterpret_cast<sockaddr*>(&a)), 0);
  ASSERT_TRUE(loop_.runUntil([&] { return c->connected != 1; }));
  EXPECT_EQ(c->connected, UV_ECONNREFUSED);

  End* bad = add();
  bad->open = true;
  EXPECT_EQ(bad->tcp.connect(loop_.get(), "not an address", 1883), UV_EINVAL);
  bad->close();
  ASSERT_TRUE(loop_.runUntil([&] { return bad->closed; }));
}

// TLS ---------------------------------------------------------------------

struct Pki {
  testing::TempDir scratch;
  std::string dir = scratch.path();
  testing::KeyCert ca = testing::makeCert("Test CA", 1, nullptr, true);
  testing::KeyCert server = testing::makeCert("localhost", 100, &ca, false);
  std::unique_ptr<tls::TlsContext> server_ctx, client_ctx;
  Pki() {
    testing::writeCert(dir + "/ca.pem", ca);
    testing::writeCert(dir + "/server.pem", server);
    testing::writeKey(dir + "/server.key", server);
    tls::TlsConfig c;
    c.cert_file = dir + "/server.pem";
    c.key_file = dir + "/server.key";
    std::string err;
    server_ctx = tls::TlsContext::create(c, err);
    EXPECT_TRUE(server_ctx) << err;
    tls::TlsConfig cc;
    cc.ca_file = dir + "/ca.pem";
    client_ctx = tls::TlsContext::createClient(cc, err);
    EXPECT_TRUE(client_ctx) << err;
  }
};

class TlsStreamTest : public StreamTest {
 protected:
  void SetUp() override {
    StreamTest::SetUp();
    server_ctx_ = pki_.server_ctx.get();
  }
  Pki pki_;
};

TEST_F(TlsStreamTest, ClientAndServerLayersHandshakeAndCarryDataBothWays) {
  const auto ends = connectPair(pki_.client_ctx.get(), "localhost");
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  // The client hears of the connection once the handshake is complete.
  ASSERT_TRUE(loop_.runUntil([&] { return c->connected == 0; }));
  EXPECT_TRUE(c->top().handshakeDone());
  ASSERT_NE(c->top().tlsSession(), nullptr);
  EXPECT_EQ(c->top().tlsSession()->peerCommonName(), "localhost");
  EXPECT_TRUE(loop_.runUntil([&] { return s->top().handshakeDone(); }));
  EXPECT_EQ(s->top().peer(), s->tcp.peer());

  const std::string hello =
      "\x10\x06"
      "hello!";  // an MQTT-ish frame
  c->send(hello);
  ASSERT_TRUE(loop_.runUntil([&] { return s->received == hello; }));
  EXPECT_GT(s->activity, 0u);       // ciphertext counted as a sign of life
  EXPECT_TRUE(s->saw_transformed);  // ciphertext never in the decode space
  s->send("answer");
  ASSERT_TRUE(loop_.runUntil([&] { return c->received == "answer"; }));

  // Large: encrypted at once, the ciphertext goes through uv_write.
  const std::string big = pattern(4 * 1024 * 1024 + 5, 3);
  c->send(big);
  EXPECT_TRUE(c->out.empty());  // TLS always takes the plaintext
  ASSERT_TRUE(loop_.runUntil([&] { return s->received.size() == hello.size() + big.size(); }));
  EXPECT_TRUE(s->received.compare(hello.size(), std::string::npos, big) == 0);
  s->send(big);
  ASSERT_TRUE(loop_.runUntil([&] { return c->received.size() == 6 + big.size(); }));
  EXPECT_TRUE(c->received.compare(6, std::string::npos, big) == 0);
  ASSERT_TRUE(loop_.runUntil([&] { return !s->top().writing() && !c->top().writing(); }));
  EXPECT_EQ(s->top().pendingBytes(), 0u);

  // Winding down: close_notify follows the next write, and the peer sees
  // it as the end of the stream.
  c->top().windDown();
  c->send("bye");
  ASSERT_TRUE(loop_.runUntil([&] { return s->ended; }));
  EXPECT_EQ(s->end_why, StreamEnd::PeerClosed);
  EXPECT_EQ(s->received.substr(s->received.size() - 3), "bye");
}

TEST_F(StreamTest, InputDoneFollowsEachReadAndTheHandlerMayWriteThere) {
  const auto ends = connectPair();
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  echoThroughInputDone(c, s, pattern(300 * 1024, 5));
  // Plain TCP: one onStreamData per read, each followed by its
  // onStreamInputDone.
  ASSERT_FALSE(s->events.empty());
  EXPECT_EQ(s->events.front(), 'D') << s->events;
  EXPECT_EQ(s->events.back(), 'I') << s->events;
  EXPECT_EQ(s->events.find("DD"), std::string::npos) << s->events;
  EXPECT_EQ(s->events.find("II"), std::string::npos) << s->events;
}

TEST_F(TlsStreamTest, InputDoneComesOnceTheWholeReadHasGoneUpThroughTls) {
  const auto ends = connectPair(pki_.client_ctx.get(), "localhost");
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(loop_.runUntil([&] { return c->connected == 0 && s->top().handshakeDone(); }));
  // A read of handshake records brought nothing up, and was done all the
  // same.
  EXPECT_NE(s->events.find('I'), std::string::npos) << s->events;
  EXPECT_EQ(s->events.find('D'), std::string::npos) << s->events;
  s->events.clear();
  // Four records of 16 KB in one write: a read of the server's 64 KB buffer
  // holds several, each going up as one onStreamData, then one
  // onStreamInputDone for all of them, with the TLS layer out of its read.
  echoThroughInputDone(c, s, pattern(4 * 16 * 1024, 9));
  ASSERT_FALSE(s->events.empty());
  EXPECT_EQ(s->events.back(), 'I') << s->events;
  EXPECT_NE(s->events.find("DDI"), std::string::npos) << s->events;
}

TEST_F(TlsStreamTest, ClientRefusesAServerWithTheWrongName) {
  const auto ends = connectPair(pki_.client_ctx.get(), "broker.example.com");
  End* c = ends.first;
  End* s = ends.second;
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(loop_.runUntil([&] { return c->ended; }));
  EXPECT_EQ(c->end_why, StreamEnd::Failed);
  EXPECT_NE(c->connected, 0);  // never told "connected"
  // The owner flushes the alert, then closes; the server sees the end.
  c->flush();
  c->close();
  ASSERT_TRUE(loop_.runUntil([&] { return s->ended; }));
}

TEST_F(TlsStreamTest, GarbageGetsAnAlertBeforeTheClose) {
  const auto ends = connectPair();
  End* c = ends.first;
  End* s = ends.second;  // a plain client
  ASSERT_NE(s, nullptr);
  c->send(std::string("\x16\x03\x01\x00\x05garbage-that-is-no-hello", 29));
  ASSERT_TRUE(loop_.runUntil([&] { return s->ended; }));
  EXPECT_EQ(s->end_why, StreamEnd::Failed);
  // What a Connection does on Failed: flush (the alert), then close.
  EXPECT_EQ(s->flush(), Stream::Write::Written);
  s->close();
  ASSERT_TRUE(loop_.runUntil([&] { return c->ended; }));
  ASSERT_FALSE(c->received.empty());
  EXPECT_EQ(static_cast<uint8_t>(c->received[0]), 0x15);  // a TLS alert record
}

// A plain OpenSSL client on a blocking socket in a thread, against the
// server layer on the loop: the layer speaks ordinary TLS.
TEST_F(TlsStreamTest, PlainOpenSslClientTalksToTheServerLayer) {
  std::atomic<bool> thread_done{false};
  std::string thread_got, thread_error;
  const int port = port_;
  X509* ca = pki_.ca.cert;
  std::thread client([&] {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{5, 0};  // the thread cannot hang either
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    SSL* ssl = nullptr;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      thread_error = "connect failed";
    } else {
      ssl = SSL_new(ctx);
      SSL_set_fd(ssl, fd);
      SSL_set1_host(ssl, "localhost");
      if (SSL_connect(ssl) != 1) {
        thread_error = "handshake failed";
      } else {
        SSL_write(ssl, "ping", 4);
        char buf[16];
        const int n = SSL_read(ssl, buf, sizeof buf);
        if (n > 0) thread_got.assign(buf, static_cast<size_t>(n));
        SSL_shutdown(ssl);
      }
      SSL_free(ssl);
    }
    ::close(fd);
    SSL_CTX_free(ctx);
    thread_done = true;
  });
  ASSERT_TRUE(loop_.runUntil([&] { return !accepted_.empty(); }));
  End* s = accepted_.back();
  s->on_data = [s] {
    if (s->received == "ping") s->send("pong");
  };
  const bool finished = loop_.runUntil([&] { return thread_done.load() && s->ended; });
  client.join();
  ASSERT_TRUE(finished) << thread_error;
  EXPECT_EQ(thread_error, "");
  EXPECT_EQ(thread_got, "pong");
  EXPECT_EQ(s->received, "ping");
  EXPECT_EQ(s->end_why, StreamEnd::PeerClosed);  // close_notify, or the FIN after it
}

}  // namespace
}  // namespace petrel
