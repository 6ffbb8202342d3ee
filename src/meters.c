/* meters: see meters.h. */
#include "config.h"

#include "meters.h"
