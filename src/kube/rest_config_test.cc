#include "src/kube/rest_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "absl/strings/escaping.h"
#include "tests/mocks/fake_filesystem.h"

namespace gdp::kube {
namespace {

using ::testing::HasSubstr;

EnvLookup Env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

TEST(InClusterConfigTest, ServiceAccountFilesAndServiceVariables) {
  FakeFileSystem fs;
  fs.AddFile("/sa/token", "tok");
  fs.AddFile("/sa/ca.crt", "PEM");
  auto c = InClusterConfig(
      fs, Env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}),
      "/sa");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->token_file, "/sa/token");
  EXPECT_EQ(c->token, "");
  EXPECT_EQ(c->ca_file, "/sa/ca.crt");
  EXPECT_EQ(c->source, "in-cluster service account");
}

TEST(InClusterConfigTest, Ipv6HostIsBracketed) {
  FakeFileSystem fs;
  fs.AddFile("/sa/token", "tok");
  fs.AddFile("/sa/ca.crt", "PEM");
  auto c = InClusterConfig(
      fs, Env({{"KUBERNETES_SERVICE_HOST", "fd00::1"}, {"KUBERNETES_SERVICE_PORT", "443"}}), "/sa");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://[fd00::1]:443");
}

TEST(InClusterConfigTest, NotInAPod) {
  FakeFileSystem fs;
  auto c = InClusterConfig(fs, Env({}), "/sa");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(c.status().message(), HasSubstr("KUBERNETES_SERVICE_HOST"));
}

TEST(InClusterConfigTest, MissingTokenSaysWhy) {
  FakeFileSystem fs;
  fs.AddFile("/sa/ca.crt", "PEM");
  auto c = InClusterConfig(
      fs, Env({{"KUBERNETES_SERVICE_HOST", "h"}, {"KUBERNETES_SERVICE_PORT", "1"}}), "/sa");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(c.status().message(), HasSubstr("/sa/token"));
  EXPECT_THAT(c.status().message(), HasSubstr("automountServiceAccountToken"));
}

std::string B64(const std::string& s) { return absl::Base64Escape(s); }

const std::string kKubeconfig = R"(apiVersion: v1
kind: Config
current-context: a
clusters:
- name: ca
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: )" +
                                B64("CA PEM") + R"(
- name: cb
  cluster:
    server: https://b:443
    certificate-authority: pki/ca.crt
    insecure-skip-tls-verify: true
users:
- name: ua
  user:
    client-certificate-data: )" +
                                B64("CERT PEM") + R"(
    client-key-data: )" + B64("KEY PEM") +
                                R"(
- name: ub
  user:
    token: secret
    client-certificate: /abs/cert.pem
    client-key: key.pem
- name: uexec
  user:
    exec:
      command: aws
contexts:
- name: a
  context: {cluster: ca, user: ua}
- name: b
  context: {cluster: cb, user: ub}
- name: e
  context: {cluster: ca, user: uexec}
- name: bad
  context: {cluster: nope, user: ua}
)";

TEST(LoadKubeconfigTest, CurrentContextWithInlineData) {
  FakeFileSystem fs;
  fs.AddFile("/home/me/.kube/config", kKubeconfig);
  auto c = LoadKubeconfig(fs, "/home/me/.kube/config");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->ca_data, "CA PEM");
  EXPECT_EQ(c->client_cert_data, "CERT PEM");
  EXPECT_EQ(c->client_key_data, "KEY PEM");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->source, "kubeconfig /home/me/.kube/config (context a)");
}

TEST(LoadKubeconfigTest, NamedContextWithFilesRelativeToTheKubeconfig) {
  FakeFileSystem fs;
  fs.AddFile("/home/me/.kube/config", kKubeconfig);
  auto c = LoadKubeconfig(fs, "/home/me/.kube/config", "b");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://b:443");
  EXPECT_EQ(c->ca_file, "/home/me/.kube/pki/ca.crt");
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->token, "secret");
  EXPECT_EQ(c->client_cert_file, "/abs/cert.pem");
  EXPECT_EQ(c->client_key_file, "/home/me/.kube/key.pem");
}

TEST(LoadKubeconfigTest, ErrorsNameTheFileAndWhat) {
  FakeFileSystem fs;
  fs.AddFile("/k", kKubeconfig);
  fs.AddFile("/broken", "clusters: [unclosed");
  fs.AddFile("/nocontext", "clusters: []\n");
  struct Case {
    const char* path;
    const char* context;
    absl::StatusCode code;
    const char* message;
  };
  for (const Case& c : std::vector<Case>{
           {"/missing", "", absl::StatusCode::kNotFound, "cannot read kubeconfig /missing"},
           {"/broken", "", absl::StatusCode::kInvalidArgument, "/broken is not valid YAML"},
           {"/nocontext", "", absl::StatusCode::kInvalidArgument, "has no current-context"},
           {"/k", "zzz", absl::StatusCode::kNotFound, "no context named \"zzz\""},
           {"/k", "bad", absl::StatusCode::kNotFound, "names cluster \"nope\""},
           {"/k", "e", absl::StatusCode::kUnimplemented, "exec or auth-provider"},
       }) {
    auto r = LoadKubeconfig(fs, c.path, c.context);
    EXPECT_EQ(r.status().code(), c.code) << c.path << " " << c.context << ": " << r.status();
    EXPECT_THAT(r.status().message(), HasSubstr(c.message)) << c.path << " " << c.context;
  }
}

TEST(DefaultKubeconfigPathTest, KubeconfigVariableThenHome) {
  EXPECT_EQ(DefaultKubeconfigPath(Env({{"KUBECONFIG", ":/a:/b"}, {"HOME", "/h"}})), "/a");
  EXPECT_EQ(DefaultKubeconfigPath(Env({{"HOME", "/h"}})), "/h/.kube/config");
  EXPECT_EQ(DefaultKubeconfigPath(Env({})), "");
}

TEST(LoadRestConfigTest, ExplicitThenInClusterThenDefault) {
  FakeFileSystem fs;
  fs.AddFile("/explicit", kKubeconfig);
  fs.AddFile("/h/.kube/config", kKubeconfig);
  fs.AddFile(std::string(kServiceAccountDir) + "/token", "t");
  fs.AddFile(std::string(kServiceAccountDir) + "/ca.crt", "c");
  auto pod = Env({{"KUBERNETES_SERVICE_HOST", "10.0.0.1"},
                  {"KUBERNETES_SERVICE_PORT", "443"},
                  {"HOME", "/h"}});
  EXPECT_EQ(LoadRestConfig(fs, pod, "/explicit")->source, "kubeconfig /explicit (context a)");
  EXPECT_EQ(LoadRestConfig(fs, pod, "")->source, "in-cluster service account");
  EXPECT_EQ(LoadRestConfig(fs, Env({{"HOME", "/h"}}), "")->source,
            "kubeconfig /h/.kube/config (context a)");
  auto none = LoadRestConfig(fs, Env({{"HOME", "/nobody"}}), "");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("/nobody/.kube/config not found"));
}

}  // namespace
}  // namespace gdp::kube
