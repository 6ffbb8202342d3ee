/* plans: see plans.h. */
#include "config.h"

#include "plans.h"
