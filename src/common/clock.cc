#include "src/common/clock.h"

namespace gdp {

Clock& RealClock::Get() {
  static RealClock* const clock = new RealClock();
  return *clock;
}

}  // namespace gdp
