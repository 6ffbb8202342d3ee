/* push: see push.h. */
#include "config.h"

#include "push.h"
