package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The Confluent wire format: magic byte 0, a 4-byte big-endian schema ID,
// then the Avro binary body.
const (
	magicByte  = 0
	headerSize = 5
)

// Sentinel errors of decoding; a *DecodeError wraps one of them, so callers
// branch with errors.Is. All of them are permanent: the same bytes will never
// decode, and belong in the dead-letter topic.
var (
	ErrShortHeader   = errors.New("record shorter than the 5-byte wire header")
	ErrBadMagic      = errors.New("wire header does not start with magic byte 0")
	ErrUnknownSchema = errors.New("schema ID unknown to the registry")
	ErrTruncated     = errors.New("the Avro body is truncated or malformed")
	ErrTrailingBytes = errors.New("bytes left over after the Avro body")
	ErrIncompatible  = errors.New("writer schema cannot be read as the current schema")
)

// DecodeError says why a record could not be decoded.
type DecodeError struct {
	SchemaID int // 0 when the header could not be read
	Err      error
}

func (e *DecodeError) Error() string {
	if e.SchemaID == 0 {
		return "decoding record: " + e.Err.Error()
	}
	return fmt.Sprintf("decoding record with schema ID %d: %v", e.SchemaID, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// AppendHeader appends the wire header for schema id to dst.
func AppendHeader(dst []byte, id int) []byte {
	return binary.BigEndian.AppendUint32(append(dst, magicByte), uint32(id))
}

// ParseHeader splits a record into its schema ID and Avro body.
func ParseHeader(b []byte) (id int, body []byte, err error) {
	if len(b) < headerSize {
		return 0, nil, &DecodeError{Err: ErrShortHeader}
	}
	if b[0] != magicByte {
		return 0, nil, &DecodeError{Err: fmt.Errorf("%w (got 0x%02x)", ErrBadMagic, b[0])}
	}
	return int(binary.BigEndian.Uint32(b[1:headerSize])), b[headerSize:], nil
}
