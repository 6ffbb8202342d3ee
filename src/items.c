/* items: see items.h. */
#include "config.h"

#include "items.h"
