/* api: see api.h. */
#include "config.h"

#include "api.h"
