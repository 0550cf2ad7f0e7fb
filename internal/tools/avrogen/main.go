// Command avrogen writes the reflection-free conversions between the records
// of package events and goavro's native values (see package
// internal/avrogen). `go generate ./pkg/codec` runs it:
//
//	go run ../../internal/tools/avrogen -events ../events -schemas ../../schemas -o native_gen.go
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/omnisync/omnisync/internal/avrogen"
)

func main() {
	cfg := avrogen.Config{Command: "internal/tools/avrogen"}
	flag.StringVar(&cfg.Package, "package", "codec", "package of the generated file")
	flag.StringVar(&cfg.EventsDir, "events", "../events", "directory of package events")
	flag.StringVar(&cfg.SchemasDir, "schemas", "../../schemas", "directory of package schemas")
	out := flag.String("o", "native_gen.go", "file to write")
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), `avrogen writes the conversions between the records of package events and
goavro's native values, from the current schemas and the Go types.

Example (what go generate ./pkg/codec runs, in pkg/codec):
  go run ../../internal/tools/avrogen -events ../events -schemas ../../schemas -o native_gen.go

Flags:
`)
		flag.PrintDefaults()
	}
	flag.Parse()
	src, err := avrogen.Generate(cfg)
	if err == nil {
		err = os.WriteFile(*out, src, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "avrogen:", err)
		os.Exit(1)
	}
}
