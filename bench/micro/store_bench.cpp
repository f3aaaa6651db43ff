// The store: committing a batch of N queued messages (one message record
// and one queue entry each, as a QoS 1 publish to a durable subscriber
// writes), and reading a queue back in windows as a reconnecting session
// does. Real LMDB files in a scratch directory, in both sync modes.
#include <benchmark/benchmark.h>
#include <stdlib.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "persistence/store.h"

namespace petrel::persistence {
namespace {

namespace fs = std::filesystem;

struct ScratchStore {
  std::string dir;
  std::unique_ptr<Store> store;
  std::mutex mu;
  std::condition_variable cv;
  uint64_t committed = 0;

  explicit ScratchStore(SyncMode mode) {
    std::string tmpl = (fs::temp_directory_path() / "petrel-micro-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) std::abort();
    dir = tmpl;
    StoreOptions o;
    o.dir = dir;
    o.map_size = 2ull << 30;
    o.sync = mode;
    std::string err;
    store = Store::open(o, err);
    if (!store) std::abort();
    store->setCommitCallback([this](uint64_t ticket, bool ok) {
      if (!ok) std::abort();
      std::lock_guard<std::mutex> l(mu);
      committed = ticket;
      cv.notify_all();
    });
  }
  ~ScratchStore() {
    store.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  // Submits the current batch and waits for its commit.
  void commit() {
    const uint64_t t = store->ticket();
    store->submit();
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return committed >= t; });
  }
};

MessageRecord record() {
  MessageRecord m;
  m.topic = "signup/events";
  m.payload = std::string(64, 'p');
  m.origin = "web-frontend-3";
  m.qos = 1;
  return m;
}

void fill(Batch& b, uint64_t& next_id, size_t n) {
  const MessageRecord m = record();
  for (size_t i = 0; i < n; ++i) {
    const uint64_t id = ++next_id;
    b.putMessage(id, m, 1);
    QueueRecord q;
    q.seq = id;
    q.msg_id = id;
    q.bytes = 64;
    b.putQueue("mail-service", q);
  }
}

// Commit of N queued messages in one batch (group commit), per sync mode.
void BM_CommitQueued(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  ScratchStore s(state.range(1) ? SyncMode::Fsync : SyncMode::Periodic);
  uint64_t next_id = 0;
  for (auto _ : state) {
    fill(s.store->batch(), next_id, n);
    s.commit();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.SetLabel(state.range(1) ? "fsync" : "periodic");
}
BENCHMARK(BM_CommitQueued)
    ->ArgsProduct({{1, 100, 1000, 10000}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

// One store for the read benchmarks: 100,000 messages queued for one
// session (ids and seqs 1 to 100,000), made once.
ScratchStore* queued100k() {
  static ScratchStore* s = [] {
    auto* st = new ScratchStore(SyncMode::Periodic);
    uint64_t next_id = 0;
    for (int i = 0; i < 10; ++i) {
      fill(st->store->batch(), next_id, 10000);
      st->commit();
    }
    return st;
  }();
  return s;
}

// A queue of 100,000 read back in windows of N, as a durable session drains.
void BM_ReadQueueWindow(benchmark::State& state) {
  const size_t window = static_cast<size_t>(state.range(0));
  ScratchStore* s = queued100k();
  uint64_t from = 1;
  size_t read = 0;
  for (auto _ : state) {
    const size_t got = s->store->readQueue("mail-service", from, window, [&](const QueueRecord& q) { from = q.seq + 1; });
    read += got;
    if (got < window) from = 1;
  }
  state.SetItemsProcessed(static_cast<int64_t>(read));
}
BENCHMARK(BM_ReadQueueWindow)->Arg(64)->Arg(1000)->Unit(benchmark::kMicrosecond);

// The messages of a window of N read back in one call, as a draining
// session's refill does: as views of the mapped pages (what the broker
// uses) or copied out into records (Arg 1). The ids run in sequence.
void BM_ReadMessagesWindow(benchmark::State& state) {
  const size_t window = static_cast<size_t>(state.range(0));
  const bool copied = state.range(1) != 0;
  ScratchStore* s = queued100k();
  std::vector<uint64_t> ids(window);
  uint64_t from = 1;
  size_t bytes = 0;
  for (auto _ : state) {
    if (from + window > 100000) from = 1;
    for (size_t i = 0; i < window; ++i) ids[i] = from + i;
    from += window;
    if (copied) {
      s->store->readMessages(ids, [&](uint64_t, MessageRecord&& m) { bytes += m.payload.size(); });
    } else {
      s->store->readMessageViews(ids, [&](uint64_t, const MessageView& m) { bytes += m.payload.size(); });
    }
  }
  benchmark::DoNotOptimize(bytes);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * window));
  state.SetLabel(copied ? "copied" : "views");
}
BENCHMARK(BM_ReadMessagesWindow)->Args({1000, 0})->Args({1000, 1})->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace petrel::persistence
