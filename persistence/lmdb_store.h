// persistence/lmdb_store.h — the Store on LMDB: opening and validating the
// data directory, a writer thread that applies batches with group commit,
// and read access for start-up, queue refills and `petrel inspect`.
#pragma once

#include "persistence/store.h"

namespace petrel::persistence {

class LmdbStore final : public Store {
 public:
  static std::unique_ptr<LmdbStore> openLmdb(const StoreOptions& options, std::string& error,
                                             std::string* notice);
  ~LmdbStore() override;

  void setCommitCallback(std::function<void(uint64_t ticket, bool ok)> cb) override;
  uint64_t committed() const override;
  void drain() override;
  std::unique_ptr<Snapshot> snapshot(uint64_t at_least) override;

  bool forEachSession(const std::function<void(std::string_view, const SessionRecord&)>& f,
                      std::string& error) const override;
  bool forEachSubscription(const std::function<void(std::string_view, const SubscriptionRecord&)>& f,
                           std::string& error) const override;
  bool forEachInboundQos2(const std::function<void(std::string_view, uint16_t)>& f,
                          std::string& error) const override;
  bool forEachRetained(const std::function<void(std::string_view, uint64_t)>& f,
                       std::string& error) const override;
  size_t readQueue(std::string_view client_id, uint64_t from, size_t limit,
                   const std::function<void(QueueRecord&)>& f) const override;
  QueueInfo queueInfo(std::string_view client_id) const override;
  bool readMessage(uint64_t id, MessageRecord& out) const override;
  void readMessageViews(const std::vector<uint64_t>& ids,
                        const std::function<void(uint64_t id, const MessageView& m)>& f) const override;
  void forEachQueueOwner(std::string_view prefix, const std::function<void(std::string_view)>& f) const override;
  uint64_t delayedCount() const override;
  size_t readDelayed(const DelayedKey& after, size_t limit,
                     const std::function<void(const DelayedKey&)>& f) const override;
  bool readDelayedMessage(const DelayedKey& k, MessageRecord& out) const override;
  uint64_t maxMessageId() const override;
  bool verifyQueuesAndMessages(std::string& error) const override;
  StoreStats stats() const override;
  uint64_t usedBytes() const override;
  uint64_t mapSize() const override { return options_.map_size; }

 protected:
  std::unique_ptr<Batch> enqueue(uint64_t ticket, std::unique_ptr<Batch> batch) override;

 private:
  struct Impl;
  explicit LmdbStore(const StoreOptions& o);
  bool openEnv(std::string& error);
  static bool walksWithoutFault(const StoreOptions& options);
  void writerMain();

  StoreOptions options_;
  std::unique_ptr<Impl> impl_;
  // openEnv() found a file shorter than its last page (and extended it,
  // unless read-only): the size it had.
  uint64_t short_size_ = 0;
  std::string short_what_;
  bool probe_ = false;  // the child process of walksWithoutFault()
  uint32_t upgraded_from_ = 0;  // the schema version found, when upgraded on open
};

}  // namespace petrel::persistence
