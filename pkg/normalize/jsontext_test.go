package normalize

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

func TestCheckJSONText(t *testing.T) {
	for _, tc := range []struct{ body, field, reason string }{
		{`{"events":[{"text":"ok 你好 \ud83d\ude00 \ufffd \\ud800 \"\ud800\udc00"}]}`, "", ""},
		{"{\"events\":[{\"text\":\"caf\xe9\"}]}", "events[0].text", "byte 0xe9 at byte 23"},
		{"{\"events\":[{\"id\":\"a\"},{\"text\":\"\xff\xfe\"}]}", "events[1].text", "not valid UTF-8: byte 0xff"},
		{`{"events":[{"text":"a\ud800b"}]}`, "events[0].text", `\ud800 is half of a UTF-16 surrogate pair`},
		{`{"events":[{"text":"\udc00"}]}`, "events[0].text", `\udc00 is half`},
		{`{"events":[{"text":"\uD800\u0041"}]}`, "events[0].text", `\uD800 is half`},
		{`{"events":[{"text":"\ud800\ud800\udc00"}]}`, "events[0].text", `\ud800 is half`},
		{`{"a":{"b":[[1,true,null,{"c":"\ud800"}]]}}`, "a.b[0][3].c", "surrogate"},
		{"{\"profile\":{\"attributes\":{\"k\xc0\":\"v\"}}}", "profile.attributes.k\uFFFD", "the key is not valid UTF-8"},
		{`{"k\udfff":1}`, "k\uFFFD", "the key is not valid text"},
		{"[\"\xed\xa0\x80\"]", "[0]", "not valid UTF-8"}, // a surrogate encoded as UTF-8
		{"\"\xff\"", "", "not valid UTF-8"},
		{"{\"a\":1}\xff", "", ""},                // after the value: the decoder refuses it
		{"{\"a\":\"x\" \"b\":\"\xff\"}", "", ""}, // malformed before the text
		{`{"a":"\u12"}`, "", ""},
		{`{"a":"\u00e9\u00E9\n\t\/\\"}`, "", ""},
	} {
		err := CheckJSONText([]byte(tc.body))
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("%q: %v", tc.body, err)
		case tc.reason != "" && (err == nil || err.Field != tc.field || !strings.Contains(err.Reason, tc.reason)):
			t.Errorf("%q: %v; want field %q, reason with %q", tc.body, err, tc.field, tc.reason)
		}
	}
}

// Nesting as deep as encoding/json allows, and deeper, neither overflows
// the stack nor loses the path.
func TestCheckJSONTextDeepNesting(t *testing.T) {
	deep := strings.Repeat("[", maxJSONDepth) + `"\ud800"` + strings.Repeat("]", maxJSONDepth)
	if err := CheckJSONText([]byte(deep)); err == nil || err.Field != strings.Repeat("[0]", maxJSONDepth) {
		t.Fatalf("at depth %d: %v", maxJSONDepth, err)
	}
	if err := CheckJSONText([]byte(strings.Repeat("[", 1<<20))); err != nil {
		t.Fatal(err)
	}
}

// For any bytes: CheckJSONText never panics; when encoding/json accepts the
// document, a strict decoder (jsontext, which refuses invalid UTF-8 and
// lone surrogates instead of replacing them) reads the same strings exactly
// when the check passes, and when the check fails it fails at the same byte
// within the same value.
func FuzzCheckJSONText(f *testing.F) {
	for _, s := range []string{
		`{"events":[{"text":"ok \ud83d\ude00 \ufffd"}]}`, "{\"events\":[{\"text\":\"caf\xe9\"}]}", `{"a":"\ud800"}`,
		`{"a":"\ud800\u0041"}`, `{"a":"\udc00\ud800"}`, "{\"k\xff\":[1,{\"x\":null}]}", "[\"\xed\xa0\x80\"]", `[1,2,{"a":[]}]`,
		`"\\ud800"`, `{"a":"\\\ud800"}`, "", "{", `{"a":}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		bad := findAlteredText(body)
		if bad != nil && (bad.offset < 0 || bad.offset >= len(body) || (body[bad.offset] != '\\' && body[bad.offset] < 0x80)) {
			t.Fatalf("reported offset %d of %q", bad.offset, body)
		}
		if !json.Valid(body) {
			return // the decoder refuses it, whatever the check says
		}
		loose, err := stringsOf(body)
		if err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		strict, err := strictStringsOf(body)
		if bad == nil {
			if err != nil {
				t.Fatalf("check passed %q, a strict decoder refuses it: %v", body, err)
			}
			if !equal(loose, strict) {
				t.Fatalf("check passed %q, but encoding/json read %q and a strict decoder %q", body, loose, strict)
			}
			return
		}
		var syn *jsontext.SyntacticError
		if !errors.As(err, &syn) {
			t.Fatalf("check refused %q (%s at %d), a strict decoder reads it: %v", body, bad.reason, bad.offset, err)
		}
		path := bad.path
		if bad.key { // the strict decoder points at the object holding the key
			path = path[:len(path)-1]
		}
		if int(syn.ByteOffset) != bad.offset || string(syn.JSONPointer) != pointer(path) {
			t.Fatalf("check refused %q at byte %d of %s, a strict decoder at byte %d of %s: %v",
				body, bad.offset, pointer(path), syn.ByteOffset, syn.JSONPointer, syn.Err)
		}
	})
}

// stringsOf returns every string, key or value, encoding/json decodes.
func stringsOf(body []byte) ([]string, error) {
	var out []string
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // numbers are not the check's business; 1e700 is valid JSON
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if s, ok := tok.(string); ok {
			out = append(out, s)
		}
	}
}

func strictStringsOf(body []byte) ([]string, error) {
	var out []string
	dec := jsontext.NewDecoder(bytes.NewReader(body), jsontext.AllowDuplicateNames(true))
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if tok.Kind() == '"' {
			out = append(out, tok.String())
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// pointer renders a path as a JSON pointer (RFC 6901).
func pointer(path []pathStep) string {
	var b strings.Builder
	for _, step := range path {
		b.WriteByte('/')
		if step.key == nil {
			b.WriteString(strconv.Itoa(step.index))
			continue
		}
		var key string
		_ = json.Unmarshal(append(append([]byte{'"'}, step.key...), '"'), &key)
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(key))
	}
	return b.String()
}
