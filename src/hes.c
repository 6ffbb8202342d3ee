#include "config.h"

#include "collectd/core/daemon/collectd.h"
#include "collectd/core/daemon/plugin.h"

void module_register(void);
void module_register(void) {
}
