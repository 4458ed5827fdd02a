// config_test's main: blocks SIGHUP before any thread exists, as the daemon's
// main() does, so the ConfigWatcher's signalfd can consume it.
#include <gmock/gmock.h>

#include "src/config/config_watcher.h"

int main(int argc, char** argv) {
  if (!gdp::config::ConfigWatcher::BlockSighup().ok()) return 2;
  testing::InitGoogleMock(&argc, argv);
  return RUN_ALL_TESTS();
}
