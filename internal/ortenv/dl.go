package ortenv

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// can_open asks the dynamic loader itself, so its answer follows ld.so.cache,
// LD_LIBRARY_PATH and RUNPATH exactly as a later load would.
static int can_open(const char *name) {
	void *h = dlopen(name, RTLD_LAZY | RTLD_LOCAL);
	if (h == NULL) return 0;
	dlclose(h);
	return 1;
}
*/
import "C"

import "unsafe"

// loadable reports whether the dynamic loader can open a library by soname or path.
func loadable(name string) bool {
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	return C.can_open(cs) == 1
}
