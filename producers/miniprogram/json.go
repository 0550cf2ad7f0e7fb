package miniprogram

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

var _ wxpush.Push = (*push)(nil)

// push is a decoded JSON push: the raw value of every top-level key.
// Getters mark what they read; the rest goes to metadata.
type push struct {
	wxpush.Tracker // keys in order, and those read
	vals           map[string]json.RawMessage
}

// readPush decodes a push body: one JSON object, keys unique.
func readPush(body []byte) (*push, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, normalize.Invalid("", "body is empty")
	}
	if invalid := normalize.CheckJSONText(body); invalid != nil {
		return nil, invalid
	}
	if !utf8.Valid(body) {
		return nil, normalize.Invalid("", "body is not valid UTF-8")
	}
	if trimmed[0] == '<' {
		return nil, normalize.Invalid("", "body is XML; this endpoint takes the JSON data format (set the mini-program's message push data format to JSON)")
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, normalize.Invalid("", "body is not a JSON object")
	}
	p := &push{vals: map[string]json.RawMessage{}}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, malformed(err)
		}
		key, ok := tok.(string)
		if !ok {
			return nil, normalize.Invalid("", "malformed JSON: object key expected")
		}
		if _, dup := p.vals[key]; dup {
			return nil, normalize.Invalid(key, "appears more than once")
		}
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, normalize.Invalid(key, "malformed JSON: %v", err)
		}
		p.vals[key] = raw
		p.Add(key)
	}
	if _, err := d.Token(); err != nil { // the closing brace
		return nil, malformed(err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, normalize.Invalid("", "content after the JSON object")
	}
	return p, nil
}

func malformed(err error) *normalize.ValidationError {
	return normalize.Invalid("", "malformed JSON: %v", err)
}

// Has reports whether the key is present and not null.
func (p *push) Has(name string) bool {
	raw, ok := p.vals[name]
	return ok && string(raw) != "null"
}

// Text returns an optional string's trimmed text, at most max characters;
// "" when absent or null.
func (p *push) Text(name string, max int) (string, error) {
	p.MarkRead(name)
	if !p.Has(name) {
		return "", nil
	}
	raw := p.vals[name]
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return "", normalize.Invalid(name, "must be a string")
	}
	return normalize.Text(name, s, max)
}

// Quote shortens a value quoted in an error message (truncate).
func (p *push) Quote(s string) string { return truncate(s) }

// Seconds reads a required integer (see integer) of Unix seconds.
func (p *push) Seconds(name string) (int64, error) {
	s, err := p.integer(name)
	if err != nil {
		return 0, err
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, normalize.Invalid(name, "%s is not Unix seconds", truncate(s))
	}
	return sec, nil
}

// MsgID reads an ID WeChat sends as a JSON number (MsgId), also accepted
// as a string: a number's digits as written, a string trimmed.
func (p *push) MsgID(name string) (string, error) {
	if p.Has(name) && p.vals[name][0] == '"' {
		return wxpush.ID(p, name)
	}
	return p.integer(name)
}

// Extra returns an unread key's text (see scalar) and its metadata key,
// the key in snake_case (SessionFrom → session_from). A key is not a path:
// its dots become '_' too.
func (p *push) Extra(name string) (key, value string, err error) {
	v, err := normalize.Text(name, p.scalar(name), wxpush.MaxExtraRunes)
	if err != nil || v == "" {
		return "", "", err
	}
	if name == "" {
		return "", "", normalize.Invalid("", "a key is empty")
	}
	if utf8.RuneCountInString(name) > wxpush.MaxKeyRunes {
		return "", "", normalize.Invalid(truncate(name), "key longer than %d characters", wxpush.MaxKeyRunes)
	}
	return wxpush.MetadataKey(strings.ReplaceAll(name, ".", "_")), v, nil
}

// integer is a required non-negative integer given as a JSON number or a
// string of digits, returned as its decimal digits. MsgId exceeds 2^53, so
// it is never read as a float.
func (p *push) integer(name string) (string, error) {
	p.MarkRead(name)
	if !p.Has(name) {
		return "", normalize.Invalid(name, "is required")
	}
	raw := p.vals[name]
	s := string(raw)
	if raw[0] == '"' {
		if json.Unmarshal(raw, &s) != nil {
			return "", normalize.Invalid(name, "must be an integer")
		}
		s = strings.TrimSpace(s)
	}
	if s == "" || len(s) > 64 || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return "", normalize.Invalid(name, "%s is not a non-negative integer", truncate(string(raw)))
	}
	if t := strings.TrimLeft(s, "0"); t != "" {
		s = t
	} else {
		s = "0"
	}
	return s, nil
}

// scalar returns an unread value's text for metadata: a string as is, a
// number or boolean as written, an object or array as compact JSON; ""
// for null.
func (p *push) scalar(name string) string {
	raw := p.vals[name]
	switch {
	case string(raw) == "null":
		return ""
	case raw[0] == '"':
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	case raw[0] == '{' || raw[0] == '[':
		var b bytes.Buffer
		if json.Compact(&b, raw) == nil {
			return b.String()
		}
	}
	return string(raw)
}

// truncate shortens a value quoted in an error message.
func truncate(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	return string([]rune(s)[:max]) + "…"
}
