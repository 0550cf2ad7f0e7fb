package merge

import "time"

// Stamp orders writes: by time, then by event (or message) ID. The zero
// Stamp is before every stamp with a later time or a non-empty ID.
type Stamp struct {
	At      time.Time
	EventID string
}

// After reports whether s is strictly newer than o.
func (s Stamp) After(o Stamp) bool {
	if !s.At.Equal(o.At) {
		return s.At.After(o.At)
	}
	return s.EventID > o.EventID
}

// instant returns t in the form records hold times: UTC, truncated to the
// millisecond like Avro's timestamp-millis, so that an event that went
// through Kafka and one that did not give the same record.
func instant(t time.Time) time.Time {
	return time.UnixMilli(t.UnixMilli()).UTC()
}

// stampOf returns the stamp of a write made at t by the event or message id.
func stampOf(t time.Time, id string) Stamp {
	return Stamp{At: instant(t), EventID: id}
}
