#include "src/kube/rest_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace gdp::kube {

EnvLookup ProcessEnv() {
  return [](const std::string& name) -> std::optional<std::string> {
    // Read-only use of an environment nobody changes after start.
    const char* value = std::getenv(name.c_str());  // NOLINT(concurrency-mt-unsafe)
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<RestConfig> InClusterConfig(const FileSystem& fs, const EnvLookup& env,
                                           const std::string& dir) {
  std::optional<std::string> host = env("KUBERNETES_SERVICE_HOST");
  std::optional<std::string> port = env("KUBERNETES_SERVICE_PORT");
  if (!host || host->empty() || !port || port->empty()) {
    return absl::FailedPreconditionError(
        "not running in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set; "
        "give a kubeconfig instead");
  }
  RestConfig config;
  // An IPv6 service address needs brackets in a URL.
  std::string h = host->find(':') != std::string::npos ? absl::StrCat("[", *host, "]") : *host;
  config.server = absl::StrCat("https://", h, ":", *port);
  config.token_file = dir + "/token";
  config.ca_file = dir + "/ca.crt";
  for (const std::string& file : {config.token_file, config.ca_file}) {
    if (!fs.Exists(file)) {
      return absl::NotFoundError(
          absl::StrCat("service account file ", file,
                       " not found; is automountServiceAccountToken false for this pod?"));
    }
  }
  config.source = "in-cluster service account";
  return config;
}

namespace {

// The entry of a kubeconfig list ("clusters", "users", "contexts") named `name`.
YAML::Node FindNamed(const YAML::Node& list, const std::string& name) {
  if (!list || !list.IsSequence()) return YAML::Node(YAML::NodeType::Undefined);
  for (const YAML::Node& entry : list) {
    if (entry["name"] && entry["name"].as<std::string>() == name) return entry;
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

std::string Str(const YAML::Node& map, const char* key) {
  if (!map || !map[key] || !map[key].IsScalar()) return "";
  return map[key].as<std::string>();
}

}  // namespace

absl::StatusOr<RestConfig> LoadKubeconfig(const FileSystem& fs, const std::string& path,
                                          const std::string& context) {
  absl::StatusOr<std::string> text = fs.ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat("cannot read kubeconfig ", path, ": ",
                                                           text.status().message()));
  }
  std::string dir = ".";
  if (auto slash = path.rfind('/'); slash != std::string::npos) {
    dir = slash == 0 ? "/" : path.substr(0, slash);
  }
  auto resolve = [&](const std::string& file) {
    if (file.empty() || file[0] == '/') return file;
    return absl::StrCat(dir, dir == "/" ? "" : "/", file);
  };
  auto base64 = [&](const std::string& field, const std::string& data,
                    std::string* out) -> absl::Status {
    if (!absl::Base64Unescape(data, out)) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubeconfig ", path, ": ", field, " is not valid base64"));
    }
    return absl::OkStatus();
  };

  try {
    YAML::Node doc = YAML::Load(*text);
    std::string ctx_name = context.empty() ? Str(doc, "current-context") : context;
    if (ctx_name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubeconfig ", path, " has no current-context; name a context"));
    }
    YAML::Node ctx = FindNamed(doc["contexts"], ctx_name)["context"];
    if (!ctx) {
      return absl::NotFoundError(
          absl::StrCat("kubeconfig ", path, " has no context named \"", ctx_name, "\""));
    }
    std::string cluster_name = Str(ctx, "cluster");
    std::string user_name = Str(ctx, "user");
    YAML::Node cluster = FindNamed(doc["clusters"], cluster_name)["cluster"];
    if (!cluster) {
      return absl::NotFoundError(absl::StrCat("kubeconfig ", path, ": context \"", ctx_name,
                                              "\" names cluster \"", cluster_name,
                                              "\", which is not in clusters"));
    }
    RestConfig config;
    config.source = absl::StrCat("kubeconfig ", path, " (context ", ctx_name, ")");
    config.server = std::string(absl::StripSuffix(Str(cluster, "server"), "/"));
    if (config.server.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("kubeconfig ", path, ": cluster \"", cluster_name, "\" has no server"));
    }
    if (std::string ca = Str(cluster, "certificate-authority-data"); !ca.empty()) {
      if (absl::Status s = base64("certificate-authority-data", ca, &config.ca_data); !s.ok()) {
        return s;
      }
    }
    config.ca_file = resolve(Str(cluster, "certificate-authority"));
    config.insecure_skip_tls_verify = Str(cluster, "insecure-skip-tls-verify") == "true";

    if (!user_name.empty()) {
      YAML::Node user = FindNamed(doc["users"], user_name)["user"];
      if (!user) {
        return absl::NotFoundError(absl::StrCat("kubeconfig ", path, ": context \"", ctx_name,
                                                "\" names user \"", user_name,
                                                "\", which is not in users"));
      }
      if (user["exec"] || user["auth-provider"]) {
        return absl::UnimplementedError(absl::StrCat(
            "kubeconfig ", path, ": user \"", user_name,
            "\" authenticates with an exec or auth-provider plugin, which is not supported; "
            "use a token or a client certificate"));
      }
      config.token = Str(user, "token");
      config.token_file = resolve(Str(user, "tokenFile"));
      if (std::string d = Str(user, "client-certificate-data"); !d.empty()) {
        if (absl::Status s = base64("client-certificate-data", d, &config.client_cert_data);
            !s.ok()) {
          return s;
        }
      }
      if (std::string d = Str(user, "client-key-data"); !d.empty()) {
        if (absl::Status s = base64("client-key-data", d, &config.client_key_data); !s.ok()) {
          return s;
        }
      }
      config.client_cert_file = resolve(Str(user, "client-certificate"));
      config.client_key_file = resolve(Str(user, "client-key"));
    }
    return config;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("kubeconfig ", path, " is not valid YAML: ", e.what()));
  }
}

std::string DefaultKubeconfigPath(const EnvLookup& env) {
  if (std::optional<std::string> list = env("KUBECONFIG"); list && !list->empty()) {
    for (absl::string_view entry : absl::StrSplit(*list, ':')) {
      if (!entry.empty()) return std::string(entry);
    }
  }
  if (std::optional<std::string> home = env("HOME"); home && !home->empty()) {
    return *home + "/.kube/config";
  }
  return "";
}

absl::StatusOr<RestConfig> LoadRestConfig(const FileSystem& fs, const EnvLookup& env,
                                          const std::string& kubeconfig) {
  if (!kubeconfig.empty()) return LoadKubeconfig(fs, kubeconfig);
  if (std::optional<std::string> host = env("KUBERNETES_SERVICE_HOST"); host && !host->empty()) {
    return InClusterConfig(fs, env);
  }
  std::string path = DefaultKubeconfigPath(env);
  if (path.empty() || !fs.Exists(path)) {
    return absl::NotFoundError(absl::StrCat(
        "no API server configuration: not in a pod (KUBERNETES_SERVICE_HOST unset) and no "
        "kubeconfig (",
        path.empty() ? std::string("$KUBECONFIG and $HOME unset") : path + " not found",
        "); give a kubeconfig path"));
  }
  return LoadKubeconfig(fs, path);
}

}  // namespace gdp::kube
