package outbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DeadLetterFile is the file in the outbox folder that holds records set aside.
const DeadLetterFile = "dead-letter.jsonl"

// deadLetter is one line of DeadLetterFile.
type deadLetter struct {
	At        time.Time `json:"at"`
	Seq       uint64    `json:"seq"`
	MessageID string    `json:"messageid"`
	Reason    string    `json:"reason"`
	// Data is the record as it would have been published: JSON as is, anything else
	// base64-encoded in DataBase64.
	Data       json.RawMessage `json:"data,omitempty"`
	DataBase64 []byte          `json:"dataBase64,omitempty"`
}

// maxReasonLen bounds the reason stored with a dead letter.
const maxReasonLen = 1024

// DeadLetter sets record seq aside for good: it is appended (and fsynced) to
// DeadLetterFile with the reason, then acknowledged so that it no longer holds up the
// queue. It is for a record that can never be delivered (the broker refuses its size).
// When the file cannot take it (DeadLetterMaxBytes reached, or a write error) the record
// is still acknowledged and the error says it is lost.
func (o *Outbox) DeadLetter(seq uint64, reason string) error {
	// One at a time from check to Ack: the size limit and the broker's refusals can name
	// the same record at once, and it must be set aside (and counted) once.
	o.dlMu.Lock()
	defer o.dlMu.Unlock()
	o.mu.Lock()
	i := o.find(seq)
	_, acked := o.acked[seq]
	if i < 0 || acked || seq > o.durable {
		o.mu.Unlock()
		return fmt.Errorf("%w: seq %d", ErrNotPending, seq)
	}
	e := o.queue[i]
	o.mu.Unlock()

	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	dl := deadLetter{At: time.Now().UTC(), Seq: seq, MessageID: e.id, Reason: reason}
	if json.Valid(e.data) {
		dl.Data = e.data
	} else {
		dl.DataBase64 = e.data
	}
	err := o.appendDeadLetter(dl)
	o.mu.Lock()
	o.deadLetters++
	o.mu.Unlock()
	o.Ack(seq)
	if err != nil {
		return fmt.Errorf("outbox: record %d (%s) set aside but not saved: %w", seq, e.id, err)
	}
	o.log.Warn("outbox: record set aside", "seq", seq, "messageid", e.id, "reason", reason,
		"file", filepath.Join(o.dir, DeadLetterFile))
	return nil
}

// appendDeadLetter appends one line; the caller holds dlMu.
func (o *Outbox) appendDeadLetter(dl deadLetter) error {
	line, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	line = append(line, '\n')
	path := filepath.Join(o.dir, DeadLetterFile)
	if fi, err := os.Stat(path); err == nil && fi.Size()+int64(len(line)) > o.opts.DeadLetterMaxBytes {
		return fmt.Errorf("%s holds %d bytes, limit %d", path, fi.Size(), o.opts.DeadLetterMaxBytes)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	_, werr := f.Write(line)
	serr := f.Sync()
	return errors.Join(werr, serr, f.Close())
}
