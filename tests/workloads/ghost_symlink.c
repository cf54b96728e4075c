/* See odd_files.h. */
#define ODD_SYMLINK
#include "odd_files.h"
