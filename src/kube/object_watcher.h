// ObjectWatcher: follows one named API object (this node's Node, the plugin's
// ConfigMap) through LIST + WATCH and tells its owner the object's state each
// time it changes, so an edit reaches the daemon within a round trip of the
// API server instead of a polling period, and an idle watch costs nothing.
//
// Its thread (std::jthread) lists `<collection>?fieldSelector=metadata.name=
// <name>`, reports the object (or its absence), then watches the collection
// from the list's resourceVersion, with the same field selector and bookmarks,
// re-watching from the last resourceVersion seen each time the API server ends
// the stream (every Options::watch_timeout). A 410 Gone, as the answer or as
// an ERROR event (the resourceVersion is older than the API server keeps),
// lists again at once; any other failure is counted, logged once per run of
// failures (and the recovery once), and retried after an exponential backoff
// with a fresh list. A Gone again before a watch has worked, and a watch that
// ends at once without an event, count as such failures, so an API server (or
// a proxy) that answers nothing else is not hammered.
//
// The callback runs on the watcher's thread: first after the first list (with
// nullopt when the object does not exist), then whenever the object changed:
// another resourceVersion, a deletion (nullopt) or a re-creation. It must
// return promptly and must not call Stop().
//
// Ownership: the ApiClient is not owned and must outlive the watcher.
// Thread-safety: synced() and stats() may be called from any thread; Start()
// and Stop() from one owning thread. Stop() is prompt while the thread waits
// on a watch or a backoff; a LIST in flight finishes first (at most the
// client's request timeout).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stop_token>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "src/common/backoff.h"
#include "src/kube/api_client.h"

namespace gdp::kube {

class ObjectWatcher {
 public:
  // The object as the API server last showed it; nullopt: it does not exist.
  using Callback = std::function<void(const std::optional<nlohmann::json>& object)>;

  struct Options {
    // The collection the object is in, without a query: "/api/v1/nodes",
    // "/api/v1/namespaces/gpu/configmaps". Required.
    std::string collection_path;
    // The object's name. Required.
    std::string name;
    // How long the API server keeps each watch open (timeoutSeconds); the
    // client gives up on a silent stream kWatchSlack later. Must be > 0.
    std::chrono::seconds watch_timeout{300};
    // The wait after a failure: doubling from backoff_initial up to
    // backoff_max, jittered down to half.
    std::chrono::milliseconds backoff_initial{500};
    std::chrono::milliseconds backoff_max{std::chrono::seconds(30)};
  };

  // For metrics.
  struct Stats {
    uint64_t lists = 0;    // LISTs sent
    uint64_t watches = 0;  // WATCHes sent
    uint64_t errors = 0;   // failures answered with a backoff (Gone relists are not errors)
  };

  // How much longer than watch_timeout the client waits for the API server
  // to end a watch before giving up on the stream itself.
  static constexpr std::chrono::seconds kWatchSlack{30};
  // A watch that the server ends sooner than this without an event counts
  // as a failure (backoff), so a proxy that cuts every watch is not hammered.
  static constexpr std::chrono::seconds kShortestEmptyWatch{1};

  ObjectWatcher(ApiClient& client, Options options, Callback on_change);
  ~ObjectWatcher();  // Stop()s
  ObjectWatcher(const ObjectWatcher&) = delete;
  ObjectWatcher& operator=(const ObjectWatcher&) = delete;

  // Starts the thread. Once: a watcher that was stopped stays stopped.
  void Start();
  // Stops and joins the thread. Idempotent.
  void Stop();

  // Whether the first list is done (true from its callback on).
  bool synced() const { return synced_.load(std::memory_order_acquire); }
  Stats stats() const;

 private:
  void Run(const std::stop_token& stop);
  // LISTs and reports; remembers the list's resourceVersion.
  absl::Status List();
  // One WATCH from resource_version_; *delivered once it delivered an event
  // other than ERROR. An ERROR event ends it as its error.
  absl::Status WatchOnce(const std::stop_token& stop, bool* delivered);
  // A watch delivered an event (other than ERROR) or ran its length: a run
  // of failures is over.
  void Worked();
  // Calls on_change_ unless the state is the one reported last.
  void Report(const std::optional<nlohmann::json>& object);
  // Waits `delay` or until stopped; false when stopped.
  bool Sleep(const std::stop_token& stop, std::chrono::milliseconds delay);
  std::string Describe() const;  // "<collection>/<name>", for logs

  ApiClient& client_;
  const Options options_;
  const Callback on_change_;
  const std::string selector_;  // "fieldSelector=metadata.name%3D<name>"

  // Only the thread uses these.
  std::string resource_version_;  // where the next watch starts
  bool reported_ = false;
  std::optional<std::string> reported_version_;  // nullopt: absence was reported
  Backoff backoff_;
  bool failing_ = false;   // in a run of failures (logged at its start)
  int gone_in_a_row_ = 0;  // Gones since a watch last worked

  std::atomic<bool> synced_{false};
  std::atomic<uint64_t> lists_{0};
  std::atomic<uint64_t> watches_{0};
  std::atomic<uint64_t> errors_{0};

  WatchCancel cancel_;  // fired by Stop(); final
  bool started_ = false;
  std::jthread thread_;  // last: joined before the members above go
};

}  // namespace gdp::kube
