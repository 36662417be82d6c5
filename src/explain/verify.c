/* verify.c — placeholder, being written. */
#include "config.h"

#include "pgscope/advisor.h"
