// sim-injector: a resident XID injector for the GPU simulator, the co-process
// `dp-load health --inject-coprocess` talks to. Each line "<index> <id>" read
// from stdin injects the XID into GPU <index> of the simulation under --root;
// it answers one line, the CLOCK_MONOTONIC time in nanoseconds taken just
// before the injection, so the load tool can time from the injection itself
// rather than from the start of a `gpusim xid` process (which takes several
// milliseconds to start). EOF on stdin ends it. Single-threaded.
#include <time.h>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include "CLI/CLI.hpp"
#include "sim/root.h"
#include "sim/state.h"

int main(int argc, char** argv) {
  CLI::App app{"sim-injector: injects XIDs into a simulation, one per stdin line"};
  std::string root;
  unsigned xid = 79;
  app.add_option("--root", root, "the simulated driver root (gpusim root DIR)")->required();
  app.add_option("--xid", xid, "XID to inject");
  CLI11_PARSE(app, argc, argv);

  auto state = gdp::sim::SharedState::Open(gdp::sim::StatePath(root));
  if (!state.ok()) {
    std::fprintf(stderr, "sim-injector: %s\n", std::string(state.status().message()).c_str());
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    unsigned gpu = 0;
    if (!(in >> gpu) || gpu >= (*state)->num_slots()) {
      std::fprintf(stderr, "sim-injector: bad line '%s' (want '<gpu slot> <id>', %u GPU slots)\n",
                   line.c_str(), (*state)->num_slots());
      return 1;
    }
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    (*state)->InjectXid(gpu, xid);
    std::printf("%lld\n", static_cast<long long>(ts.tv_sec) * 1000000000LL + ts.tv_nsec);
    std::fflush(stdout);
  }
  return 0;
}
