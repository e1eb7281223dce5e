package supervisor

import (
	"log/slog"
	"sync/atomic"
)

// instanceOutput receives the stdout and stderr of an instance's
// processes: it appends them to the instance's log file and keeps the
// last lines. It never fails a write, so that the copy from the process
// never stops.
type instanceOutput struct {
	file  *rotatingFile
	lines *lineRing
	log   *slog.Logger
	// failing is set while writes to the file fail, so that a failure is
	// logged once, not at every write.
	failing atomic.Bool
}

func (o *instanceOutput) Write(p []byte) (int, error) {
	_, _ = o.lines.Write(p)
	if _, err := o.file.Write(p); err != nil {
		if !o.failing.Swap(true) {
			o.log.Warn("supervisor: writing the instance's log file failed; its output is lost until it works again",
				"file", o.file.path, "error", err)
		}
	} else if o.failing.Swap(false) {
		o.log.Info("supervisor: writing the instance's log file works again", "file", o.file.path)
	}
	return len(p), nil
}

func (o *instanceOutput) close() error { return o.file.Close() }
