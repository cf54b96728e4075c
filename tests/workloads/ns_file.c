/* See odd_files.h. */
#define ODD_NSFILE
#include "odd_files.h"
