package codec_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/linkedin/goavro/v2"

	"github.com/omnisync/omnisync/pkg/avro"
	"github.com/omnisync/omnisync/pkg/codec"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/schemas"
)

// The baseline is raw goavro on the same record as a ready-made native map:
// what omnisync adds is the Go mapping, the header and, on decode, the
// schema lookup by ID. `make bench` prints the ratios. Besides ns/op each
// reports cpu-ns/op, the process's CPU time (GC included) per record, which
// other processes competing for the cores disturb less.

func BenchmarkEncode(b *testing.B) {
	s, _, _ := newSerde(b)
	for _, tc := range benchRecords(b) {
		b.Run(tc.name+"/baseline=goavro", func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			defer reportCPU(b, cpuTime())
			for b.Loop() {
				if _, err := tc.codec.BinaryFromNative(buf[:0], tc.native); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/omnisync", func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			defer reportCPU(b, cpuTime())
			for b.Loop() {
				if _, err := s.AppendEncode(buf[:0], tc.value); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	s, _, _ := newSerde(b)
	ctx := context.Background()
	for _, tc := range benchRecords(b) {
		wire, err := s.Encode(tc.value)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/baseline=goavro", func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b, cpuTime())
			for b.Loop() {
				if _, _, err := tc.codec.NativeFromBinary(wire[5:]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/omnisync", func(b *testing.B) {
			b.ReportAllocs()
			defer reportCPU(b, cpuTime())
			for b.Loop() {
				if err := s.Decode(ctx, wire, tc.newOut()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeOlderVersion decodes a CustomerEvent written with the first
// released schema: the schema resolution onto today's schema comes on top of
// the Go mapping.
func BenchmarkDecodeOlderVersion(b *testing.B) {
	s, reg, _ := newSerde(b)
	ctx := context.Background()
	history, err := schemas.History(schemas.CustomerEvent)
	if err != nil {
		b.Fatal(err)
	}
	old, err := goavro.NewCodec(history[0])
	if err != nil {
		b.Fatal(err)
	}
	id, err := reg.Register(ctx, "bench-customer-event-v1-value", history[0])
	if err != nil {
		b.Fatal(err)
	}
	rec := benchRecords(b)[0]
	wire, err := old.BinaryFromNative(codec.AppendHeader(nil, id), rec.native) // v1 ignores today's extra fields
	if err != nil {
		b.Fatal(err)
	}
	b.Run("CustomerEvent-v1/baseline=goavro", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b, cpuTime())
		for b.Loop() {
			if _, _, err := old.NativeFromBinary(wire[5:]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CustomerEvent-v1/omnisync", func(b *testing.B) {
		b.ReportAllocs()
		defer reportCPU(b, cpuTime())
		for b.Loop() {
			if err := s.Decode(ctx, wire, new(events.CustomerEvent)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type benchRecord struct {
	name   string
	value  any
	newOut func() any
	codec  *goavro.Codec
	native any
}

func benchRecords(b *testing.B) []benchRecord {
	recs := []benchRecord{
		{name: "CustomerEvent", value: sampleCustomerEvent(), newOut: func() any { return new(events.CustomerEvent) }},
		{name: "MessageEvent", value: sampleMessageEvent(), newOut: func() any { return new(events.MessageEvent) }},
	}
	for i, name := range []schemas.Name{schemas.CustomerEvent, schemas.MessageEvent} {
		c, err := goavro.NewCodec(schemas.Current(name))
		if err != nil {
			b.Fatal(err)
		}
		parsed, err := avro.Parse(schemas.Current(name))
		if err != nil {
			b.Fatal(err)
		}
		native, err := avro.ToNative(parsed, recs[i].value)
		if err != nil {
			b.Fatal(err)
		}
		recs[i].codec, recs[i].native = c, native
	}
	_ = codec.ErrTruncated
	return recs
}

// cpuTime returns the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
