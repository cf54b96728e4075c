/* See odd_files.h. */
#define ODD_MEMFD_EXEC
#include "odd_files.h"
