// Command omnisync keeps customer data in sync across customer-service
// channels, with Kafka as the backbone. See `omnisync help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRootCommand().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "omnisync:", err)
		os.Exit(exitCode(err))
	}
}
