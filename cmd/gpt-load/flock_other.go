//go:build !unix

package main

import "os"

// tryLock is a no-op where flock does not exist: the service is built for Unix-like
// systems, and elsewhere a second node on one DATA_DIR is not detected.
func tryLock(*os.File) error { return nil }

func unlock(*os.File) {}
