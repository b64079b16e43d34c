// Package sharedfile keeps a small file that several processes edit in force: read again when it changes, edited under an advisory lock from its current content, replaced atomically.
package sharedfile
