// Package ingest is the pipeline every channel producer runs:
//
//	authenticate → parse → validate and normalise → resolve the customer ID
//	→ build events → encode → produce keyed by customer ID (idempotent,
//	acks=all) → answer only after Kafka acknowledged every event.
//
// A channel (package producers/web, producers/wechat, …) supplies only what
// differs: a Channel that authenticates a request and parses its native
// body into a Batch. Optional behaviour is discovered by type assertion: a
// Handshaker answers GET verification requests (WeChat's echostr), a
// Responder writes the channel's own success answer. Channels check their
// fields with package pkg/normalize (bad input is a
// *normalize.ValidationError) and refuse credentials with errors wrapping
// httpauth.ErrUnauthorized (package pkg/httpauth, which also checks bearer
// keys); the agent API uses both too.
//
// Bad input gets a 4xx naming the field and the reason, and its raw bytes
// (the first 64 KiB and the size of a larger input, see package deadletter)
// go to the dead-letter topic; Kafka unavailable gets 503 with Retry-After;
// nothing is answered 2xx before Kafka has it.
//
// A producer that does not serve HTTP (omnisync import, package
// producers/importer) runs the same steps itself: Pipeline.Complete on
// each parsed batch, Pipeline.Produce once Kafka should take them, and
// Pipeline.DeadLetters for what it rejected.
package ingest
