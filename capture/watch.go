package capture

// fsOp is what happened to a name in a watched folder.
type fsOp int

const (
	opTouched  fsOp = iota // created, written, attributes changed: maybe still being written
	opComplete             // renamed into the folder, or closed after writing: its writer is done
	opGone                 // deleted or renamed away
	opDirGone              // the folder itself was deleted, renamed or unmounted
	opOverflow             // the kernel dropped events: rescan
)

// fsEvent is one change in a watched folder; name is the base name ("" for the folder).
type fsEvent struct {
	name string
	op   fsOp
}

// dirWatcher reports changes to the names directly in one folder.
type dirWatcher interface {
	Events() <-chan fsEvent
	Errors() <-chan error
	Close() error
}
