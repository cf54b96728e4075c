/* See odd_files.h. */
#define ODD_SPARSE
#include "odd_files.h"
