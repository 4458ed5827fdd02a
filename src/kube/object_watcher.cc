#include "src/kube/object_watcher.h"

#include <condition_variable>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "src/common/log.h"

namespace gdp::kube {

namespace {

using json = nlohmann::json;

// A string field of `object`'s metadata; "" when absent.
std::string MetadataField(const json& object, const char* field) {
  if (!object.is_object()) return "";
  auto metadata = object.find("metadata");
  if (metadata == object.end() || !metadata->is_object()) return "";
  auto value = metadata->find(field);
  return value != metadata->end() && value->is_string() ? value->get<std::string>() : "";
}

// The error an ERROR event stands for (its object is a metav1.Status).
absl::Status ErrorFromEvent(const std::string& path, const json& status) {
  auto code = status.is_object() ? status.find("code") : status.end();
  if (!status.is_object() || code == status.end() || !code->is_number_integer()) {
    return absl::InternalError(absl::StrCat(
        "GET ", path, ": an ERROR event without a code: ", status.dump().substr(0, 200)));
  }
  return ErrorFromResponse("GET", absl::StrCat(path, " (ERROR event)"), code->get<int>(),
                           status.dump());
}

// For logs: the code and the message, without payloads.
std::string Text(const absl::Status& status) {
  return absl::StrCat(absl::StatusCodeToString(status.code()), ": ", status.message());
}

}  // namespace

ObjectWatcher::ObjectWatcher(ApiClient& client, Options options, Callback on_change)
    : client_(client),
      options_(std::move(options)),
      on_change_(std::move(on_change)),
      selector_(absl::StrCat("fieldSelector=",
                             EscapeQueryValue(absl::StrCat("metadata.name=", options_.name)))),
      backoff_(options_.backoff_initial, options_.backoff_max) {}

ObjectWatcher::~ObjectWatcher() { Stop(); }

void ObjectWatcher::Start() {
  if (started_) return;
  started_ = true;
  log::Info("watching an API object", {{"object", Describe()}});
  thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
}

void ObjectWatcher::Stop() {
  if (!thread_.joinable()) return;
  thread_.request_stop();
  cancel_.Cancel();
  thread_.join();
}

ObjectWatcher::Stats ObjectWatcher::stats() const {
  return Stats{.lists = lists_.load(), .watches = watches_.load(), .errors = errors_.load()};
}

std::string ObjectWatcher::Describe() const {
  return absl::StrCat(options_.collection_path, "/", options_.name);
}

void ObjectWatcher::Run(const std::stop_token& stop) {
  bool need_list = true;
  // Counts and logs a failure, then waits; false when stopped meanwhile.
  auto fail = [&](const absl::Status& error) {
    errors_.fetch_add(1);
    if (!failing_) {
      log::Warn("watch of an API object failed; retrying with backoff",
                {{"object", Describe()}, {"error", Text(error)}});
    }
    failing_ = true;
    need_list = true;
    return Sleep(stop, backoff_.Next());
  };

  while (!stop.stop_requested()) {
    if (need_list) {
      absl::Status s = List();
      if (stop.stop_requested()) return;
      if (!s.ok()) {
        if (!fail(s)) return;
        continue;
      }
      need_list = false;
    }
    const auto started = std::chrono::steady_clock::now();
    bool delivered = false;
    absl::Status s = WatchOnce(stop, &delivered);
    if (stop.stop_requested()) return;
    if (s.ok() && !delivered && std::chrono::steady_clock::now() - started < kShortestEmptyWatch) {
      // Not the API server's timeoutSeconds: something ends every watch at
      // once, and watching again at once would spin.
      s = absl::UnavailableError(absl::StrCat(
          "the watch of ", Describe(), " ended at once without an event; is a proxy cutting it?"));
    }
    if (s.ok()) {  // the stream ended: watch again from where it was
      Worked();
      continue;
    }
    if (IsGone(s) && ++gone_in_a_row_ == 1) {
      log::Info("the watched resourceVersion expired; listing again",
                {{"object", Describe()}, {"resource_version", resource_version_}});
      need_list = true;
      continue;
    }
    if (!fail(s)) return;
  }
}

void ObjectWatcher::Worked() {
  if (failing_) {
    log::Info("watch of an API object recovered",
              {{"object", Describe()}, {"errors", errors_.load()}});
  }
  failing_ = false;
  gone_in_a_row_ = 0;
  backoff_.Reset();
}

absl::Status ObjectWatcher::List() {
  lists_.fetch_add(1);
  const std::string path = absl::StrCat(options_.collection_path, "?", selector_);
  absl::StatusOr<json> list = client_.Get(path);
  if (!list.ok()) return list.status();
  const std::string version = MetadataField(*list, "resourceVersion");
  if (version.empty()) {
    return absl::InternalError(
        absl::StrCat("GET ", path, ": the list has no metadata.resourceVersion to watch from"));
  }
  std::optional<json> found;
  if (auto items = list->find("items"); items != list->end() && !items->is_null()) {
    if (!items->is_array()) {
      return absl::InternalError(absl::StrCat("GET ", path, ": the list's items are not an array"));
    }
    for (const json& item : *items) {
      if (MetadataField(item, "name") == options_.name) found = item;
    }
  }
  resource_version_ = version;
  synced_.store(true, std::memory_order_release);  // already true in the callback
  Report(found);
  return absl::OkStatus();
}

absl::Status ObjectWatcher::WatchOnce(const std::stop_token& stop, bool* delivered) {
  watches_.fetch_add(1);
  const std::string path =
      absl::StrCat(options_.collection_path, "?watch=true&", selector_,
                   "&resourceVersion=", EscapeQueryValue(resource_version_),
                   "&allowWatchBookmarks=true&timeoutSeconds=", options_.watch_timeout.count());
  absl::Status event_error;
  absl::Status s = client_.Watch(
      path,
      [&](const WatchEvent& event) {
        if (event.type == "ERROR") {
          event_error = ErrorFromEvent(path, event.object);
          return false;
        }
        if (!*delivered) Worked();
        *delivered = true;
        // Any event's resourceVersion is a point the watch can resume from.
        if (std::string version = MetadataField(event.object, "resourceVersion");
            !version.empty()) {
          resource_version_ = std::move(version);
        }
        if (MetadataField(event.object, "name") == options_.name) {
          if (event.type == "ADDED" || event.type == "MODIFIED") {
            Report(event.object);
          } else if (event.type == "DELETED") {
            Report(std::nullopt);
          }
        }
        return !stop.stop_requested();
      },
      cancel_, options_.watch_timeout + kWatchSlack);
  return event_error.ok() ? s : event_error;
}

void ObjectWatcher::Report(const std::optional<json>& object) {
  std::optional<std::string> version;
  if (object.has_value()) version = MetadataField(*object, "resourceVersion");
  if (reported_ && version == reported_version_) return;
  reported_ = true;
  reported_version_ = std::move(version);
  on_change_(object);
}

bool ObjectWatcher::Sleep(const std::stop_token& stop, std::chrono::milliseconds delay) {
  std::mutex mu;
  std::condition_variable_any cv;
  std::unique_lock<std::mutex> lock(mu);
  cv.wait_for(lock, stop, delay, [] { return false; });
  return !stop.stop_requested();
}

}  // namespace gdp::kube
