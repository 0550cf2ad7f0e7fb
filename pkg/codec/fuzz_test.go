package codec_test

import (
	"context"
	"errors"
	"testing"

	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
)

func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 1})
	f.Add([]byte{0, 0, 0, 0, 1, 2, 3})
	f.Add([]byte{1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, body, err := codec.ParseHeader(b)
		if err != nil {
			if !errors.Is(err, codec.ErrShortHeader) && !errors.Is(err, codec.ErrBadMagic) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if got := append(codec.AppendHeader(nil, id), body...); string(got) != string(b) {
			t.Fatalf("header does not round-trip: %x vs %x", got, b)
		}
	})
}

// FuzzDecode feeds arbitrary bytes, seeded with valid records, to the
// decoder of every record type: it must return a value or a *DecodeError,
// never panic, and what it decodes must encode again.
func FuzzDecode(f *testing.F) {
	s, _, _ := newSerde(f)
	for _, v := range []any{sampleCustomerEvent(), sampleMessageEvent(), sampleState(), sampleDeadLetter()} {
		b, err := s.Encode(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte{0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, out := range []any{new(events.CustomerEvent), new(events.MessageEvent), new(events.CustomerState), new(events.DeadLetter)} {
			err := s.Decode(ctx, b, out)
			if err != nil {
				var de *codec.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("decoding into %T: error is not a *DecodeError: %v", out, err)
				}
				continue
			}
			if _, err := s.Encode(out); err != nil {
				t.Fatalf("decoded %T does not encode again: %v", out, err)
			}
		}
	})
}
