/* mqtt: see mqtt.h. */
#include "config.h"

#include "mqtt.h"
