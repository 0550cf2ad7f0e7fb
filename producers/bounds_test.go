package producers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/omnisync/omnisync/internal/testenv"
	"github.com/omnisync/omnisync/pkg/deadletter"
	"github.com/omnisync/omnisync/pkg/events"
	"github.com/omnisync/omnisync/pkg/kafka"
	"github.com/omnisync/omnisync/schemas"
)

// deadLetters returns the dead letters written since the test began, by ID.
func (e *env) deadLetters(t *testing.T) map[string]events.DeadLetter {
	t.Helper()
	ctx := context.Background()
	ends, err := kadm.NewClient(e.cl).ListEndOffsets(ctx, schemas.DeadLetterTopic)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset - e.dlqFrom[o.Partition].EpochOffset().Offset })
	c, err := kafka.NewClient(e.k.Config(), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{schemas.DeadLetterTopic: e.dlqFrom}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out := map[string]events.DeadLetter{}
	for read := int64(0); read < total && pctx.Err() == nil; {
		c.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			read++
			var dl events.DeadLetter
			if e.serde.Decode(ctx, r.Value, &dl) == nil {
				out[dl.ID] = dl
			}
		})
	}
	return out
}

// refusal is a producer's JSON answer to refused input.
type refusal struct {
	Error, Field, Reason string
	DeadLetterID         string `json:"dead_letter_id"`
}

// Input too large for a field or for the body is refused with 400 naming
// the field or 413, and kept in the dead-letter topic as its first 64 KiB
// and its size — never 503 because the dead letter itself was too large
// for Kafka (which refuses records over about 1 MB by default: franz-go's
// 1,000,012-byte batch limit, Kafka's message.max.bytes 1,048,588).
func TestOversizedInputGets4xxAndABoundedDeadLetter(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		e := start(t, k)
		const maxBody = 1 << 20 // the pipeline's default MaxBodyBytes
		big := strings.Repeat("a", 1_040_000)
		bigJSON, _ := json.Marshal(big)
		at := `"occurred_at":"2026-11-22T09:20:00+08:00"`
		now := time.Now().Unix()
		tenMB := `{"visitor_id":"v","events":[{"type":"message","id":"w",` + at + `,"text":"` + strings.Repeat("x", 10<<20) + `"}]}`
		for _, tc := range []struct {
			name, url, key, contentType, body string
			chunked                           bool
			code                              int
			field                             string
			size                              int64
		}{
			{name: "web text", url: "/ingest/web", key: "web-key", code: 400, field: "events[0].text",
				body: `{"visitor_id":"v","events":[{"type":"message","id":"w",` + at + `,"text":` + string(bigJSON) + `}]}`},
			{name: "web attachment URL", url: "/ingest/web", key: "web-key", code: 400, field: "events[0].attachments[0].url",
				body: `{"visitor_id":"v","events":[{"type":"message","id":"w",` + at + `,"content_type":"file","attachments":[{"url":"https://x.example/` + big + `"}]}]}`},
			{name: "web profile attribute", url: "/ingest/web", key: "web-key", code: 400, field: "events[0].profile.attributes.note",
				body: `{"visitor_id":"v","events":[{"type":"profile","id":"p",` + at + `,"profile":{"attributes":{"note":` + string(bigJSON) + `}}}]}`},
			{name: "app metadata", url: "/ingest/app", key: "app-key", code: 400, field: "events[0].metadata.note",
				body: `{"device_id":"d","app_version":"1","platform":"ios","events":[{"type":"message","id":"m",` + at + `,"text":"hi","metadata":{"note":` + string(bigJSON) + `}}]}`},
			{name: "phone transcript segment", url: "/ingest/phone", key: "phone-key", code: 400, field: "segments[0].text",
				body: `{"call_id":"c","direction":"inbound","caller":"13800138000","callee":"4008001234","agent_id":"a","started_at":"2026-11-22T10:00:00+08:00","ended_at":"2026-11-22T10:01:00+08:00",` +
					`"segments":[{"speaker":"caller","start_ms":0,"end_ms":1000,"text":` + string(bigJSON) + `,"confidence":0.9}]}`},
			{name: "mini-program Content", url: "miniprogram", contentType: "application/json", code: 400, field: "Content",
				body: fmt.Sprintf(`{"ToUserName":"gh_mp","FromUserName":"o","CreateTime":%d,"MsgType":"text","Content":%s,"MsgId":1}`, now, bigJSON)},
			{name: "WeChat Content", url: "wechat", contentType: "text/xml", code: 400, field: "Content",
				body: fmt.Sprintf(`<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>%d</CreateTime><MsgType>text</MsgType><Content>%s</Content><MsgId>1</MsgId></xml>`, now, big)},
			{name: "10 MB body with Content-Length", url: "/ingest/web", key: "web-key", code: 413, body: tenMB, size: int64(len(tenMB))},
			{name: "10 MB body chunked", url: "/ingest/web", key: "web-key", code: 413, body: tenMB, chunked: true, size: maxBody + 1},
		} {
			t.Run(tc.name, func(t *testing.T) {
				url := e.url + tc.url
				switch tc.url {
				case "miniprogram":
					url = signedURL(e.url, "/ingest/miniprogram", "mp-token", "")
				case "wechat":
					url = signedURL(e.url, "/ingest/wechat", "wechat-token", "")
				}
				var body io.Reader = strings.NewReader(tc.body)
				if tc.chunked {
					body = io.MultiReader(body) // no length: sent chunked
				}
				req, _ := http.NewRequest(http.MethodPost, url, body)
				if tc.key != "" {
					req.Header.Set("Authorization", "Bearer "+tc.key)
				}
				req.Header.Set("Content-Type", cmp(tc.contentType, "application/json"))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var got refusal
				if err := json.Unmarshal(raw, &got); err != nil || resp.StatusCode != tc.code || got.Field != tc.field || got.DeadLetterID == "" {
					t.Fatalf("answered %d %.300s; want %d naming field %q with a dead letter", resp.StatusCode, raw, tc.code, tc.field)
				}
				if len(got.Reason) > deadletter.MaxText {
					t.Errorf("reason of %d bytes", len(got.Reason))
				}
				if tc.size == 0 {
					tc.size = int64(len(tc.body))
				}
				dl, ok := e.deadLetters(t)[got.DeadLetterID]
				if !ok {
					t.Fatalf("dead letter %s not in the topic", got.DeadLetterID)
				}
				if !bytes.Equal(dl.Payload, []byte(tc.body[:deadletter.MaxPayload])) || dl.PayloadSize != tc.size || !dl.PayloadTruncated {
					t.Fatalf("dead letter keeps %d bytes (the input's first: %v), size %d, truncated %v; want the first %d bytes and size %d",
						len(dl.Payload), bytes.HasPrefix([]byte(tc.body), dl.Payload), dl.PayloadSize, dl.PayloadTruncated, deadletter.MaxPayload, tc.size)
				}
				if (dl.Field == nil) != (tc.field == "") || (dl.Field != nil && *dl.Field != tc.field) || dl.Stage != "ingest" {
					t.Fatalf("dead letter field %v, stage %q", dl.Field, dl.Stage)
				}
			})
		}
	})
}

func cmp(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Text encoding/json would silently alter — invalid UTF-8, a \u escape of
// half a surrogate pair — is refused with 400 naming the field, the raw
// bytes in the dead-letter topic, on every JSON channel; NUL stays refused.
func TestInvalidTextGets400NamingTheField(t *testing.T) {
	testenv.ForEachKafka(t, func(t *testing.T, k testenv.Kafka) {
		e := start(t, k)
		u := testenv.UniqueName(t, "x")
		at := `"occurred_at":"2026-11-22T09:20:00+08:00"`
		web := func(event string) string {
			return `{"visitor_id":"v-` + u + `","events":[{"type":"message","id":"w",` + at + `,` + event + `}]}`
		}
		mp := func(content string) string {
			return fmt.Sprintf(`{"ToUserName":"gh_mp","FromUserName":"o-%s","CreateTime":%d,"MsgType":"text","Content":%s,"MsgId":1}`, u, time.Now().Unix(), content)
		}
		for _, tc := range []struct{ name, url, key, body, field, reason string }{
			{"web: bytes ff fe", "/ingest/web", "web-key", web("\"text\":\"caf\xff\xfe\""), "events[0].text", "not valid UTF-8"},
			{"web: lone high surrogate", "/ingest/web", "web-key", web(`"text":"a\ud800b"`), "events[0].text", "surrogate"},
			{"web: lone low surrogate", "/ingest/web", "web-key", web(`"text":"\udc00"`), "events[0].text", "surrogate"},
			{"web: high surrogate before a non-surrogate escape", "/ingest/web", "web-key", web(`"text":"\ud800\u0041"`), "events[0].text", "surrogate"},
			{"web: NUL", "/ingest/web", "web-key", web(`"text":"a\u0000b"`), "events[0].text", "NUL"},
			{"app: metadata value", "/ingest/app", "app-key",
				`{"device_id":"d-` + u + `","app_version":"1","platform":"ios","events":[{"type":"message","id":"m",` + at + `,"text":"hi","metadata":{"k":"a\udc00"}}]}`, "events[0].metadata.k", "surrogate"},
			{"phone: transcript segment", "/ingest/phone", "phone-key",
				`{"call_id":"c-` + u + `","direction":"inbound","caller":"13800138000","callee":"4008001234","agent_id":"a","started_at":"2026-11-22T10:00:00+08:00","ended_at":"2026-11-22T10:01:00+08:00",` +
					"\"segments\":[{\"speaker\":\"caller\",\"start_ms\":0,\"end_ms\":1000,\"text\":\"\xc3\x28\",\"confidence\":0.9}]}", "segments[0].text", "not valid UTF-8"},
			{"mini-program: bytes ff fe", "miniprogram", "", mp("\"caf\xff\xfe\""), "Content", "not valid UTF-8"},
			{"mini-program: lone surrogate", "miniprogram", "", mp(`"\ud800"`), "Content", "surrogate"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				url, contentType := e.url+tc.url, "application/json"
				if tc.url == "miniprogram" {
					url = signedURL(e.url, "/ingest/miniprogram", "mp-token", "")
				}
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(tc.body))
				if tc.key != "" {
					req.Header.Set("Authorization", "Bearer "+tc.key)
				}
				req.Header.Set("Content-Type", contentType)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				raw, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				var got refusal
				if err := json.Unmarshal(raw, &got); err != nil || resp.StatusCode != 400 || got.Field != tc.field || !strings.Contains(got.Reason, tc.reason) || got.DeadLetterID == "" {
					t.Fatalf("answered %d %s; want 400 naming %q (%s) with a dead letter", resp.StatusCode, raw, tc.field, tc.reason)
				}
				dl, ok := e.deadLetters(t)[got.DeadLetterID]
				if !ok {
					t.Fatalf("dead letter %s not in the topic", got.DeadLetterID)
				}
				if !bytes.Equal(dl.Payload, []byte(tc.body)) || dl.PayloadSize != int64(len(tc.body)) || dl.PayloadTruncated || dl.Field == nil || *dl.Field != tc.field {
					t.Fatalf("dead letter %q (size %d, truncated %v, field %v); want the raw input", dl.Payload, dl.PayloadSize, dl.PayloadTruncated, dl.Field)
				}
			})
		}
	})
}
