/* See odd_files.h. */
#define ODD_LINKED
#include "odd_files.h"
