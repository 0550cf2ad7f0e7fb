//go:build unix

package main

import "syscall"

// restrictUmask makes files and directories the process creates private to
// its owner (0600 and 0700).
func restrictUmask() { syscall.Umask(0o077) }
