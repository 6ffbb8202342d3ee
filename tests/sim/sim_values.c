/* placeholder */
#include "sim_values.h"
