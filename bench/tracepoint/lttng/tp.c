/* Instantiates the mmtp tracepoint probes (LTTng-UST boilerplate). */
#define TRACEPOINT_CREATE_PROBES
#define TRACEPOINT_DEFINE
#include "tp.h"
