// What the daemon needs of whoever runs the MPS control daemons: the
// Supervisor (src/mps/supervisor.h) runs them as the plugin's own children,
// the AgentClient (src/mps/agent.h) hands them to `gpu-device-plugin
// mps-agent`, which runs them in a DaemonSet of their own so they outlive a
// plugin restart or upgrade. Every method is thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "src/mps/gpu_spec.h"

namespace gdp::mps {

class Controller {
 public:
  virtual ~Controller() = default;
  // Makes the running daemons match `gpus` (see Supervisor::Apply); health
  // comes through the callback the controller was made with.
  virtual absl::Status Apply(const std::vector<GpuSpec>& gpus) = 0;
  // Quits every daemon: no GPU is shared through MPS any more, or the driver
  // is going away.
  virtual void Stop() = 0;
  // The plugin stops: daemons that can outlive it keep running.
  virtual void Detach() = 0;
  // A snapshot, ordered by UUID.
  virtual std::vector<GpuHealth> Health() const = 0;
};

}  // namespace gdp::mps
