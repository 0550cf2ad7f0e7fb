package normalize

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CheckJSONText refuses JSON text that encoding/json would alter without a
// word: a string, key or value, holding invalid UTF-8 or a \u escape of a
// UTF-16 surrogate without its other half, both of which the decoder
// replaces with U+FFFD. The error names the value's path as the channels
// name fields (events[0].text; for a key, the path ending with that key).
// Every JSON channel calls it on the body before decoding. It reads the
// first JSON value of body and looks at its strings only: a malformed
// document passes, for the decoder to refuse.
func CheckJSONText(body []byte) *ValidationError {
	bad := findAlteredText(body)
	if bad == nil {
		return nil
	}
	reason := bad.reason + " at byte " + strconv.Itoa(bad.offset)
	if bad.key {
		reason = "the key is " + reason
	}
	return Invalid(bad.field(), "%s", reason)
}

// alteredText is the first JSON text encoding/json would alter.
type alteredText struct {
	offset int        // of the offending byte or escape in the body
	path   []pathStep // of the value; for a key, ending with the key
	key    bool       // the key is altered, not its value
	reason string
}

// pathStep is an object key (raw, between its quotes) or an array index.
type pathStep struct {
	key   []byte
	index int
}

// field renders the path: events[0].profile.name.
func (a *alteredText) field() string {
	var b strings.Builder
	for _, step := range a.path {
		if step.key == nil {
			b.WriteString("[" + strconv.Itoa(step.index) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		var key string
		if json.Unmarshal(append(append([]byte{'"'}, step.key...), '"'), &key) != nil {
			key = strings.ToValidUTF8(string(step.key), "\uFFFD")
		}
		b.WriteString(key)
	}
	return b.String()
}

// maxJSONDepth is encoding/json's nesting limit: deeper documents are
// refused by the decoder anyway.
const maxJSONDepth = 10000

// findAlteredText walks the first JSON value of body.
func findAlteredText(body []byte) *alteredText {
	s := &textScanner{b: body}
	s.value(0)
	return s.bad
}

type textScanner struct {
	b    []byte
	i    int
	path []pathStep
	bad  *alteredText
}

// value scans one value; false stops the walk: altered text found, or a
// malformed document.
func (s *textScanner) value(depth int) bool {
	s.space()
	if s.i >= len(s.b) || depth > maxJSONDepth {
		return false
	}
	switch s.b[s.i] {
	case '"':
		return s.str(false)
	case '{':
		s.i++
		if s.space(); s.at('}') {
			s.i++
			return true
		}
		for {
			if s.space(); !s.at('"') {
				return false
			}
			end := s.stringEnd()
			if end < 0 {
				return false
			}
			s.path = append(s.path, pathStep{key: s.b[s.i+1 : end-1]})
			if !s.str(true) {
				return false
			}
			if s.space(); !s.at(':') {
				return false
			}
			s.i++
			if !s.value(depth + 1) {
				return false
			}
			s.path = s.path[:len(s.path)-1]
			if !s.more() {
				return s.end('}')
			}
		}
	case '[':
		s.i++
		if s.space(); s.at(']') {
			s.i++
			return true
		}
		for n := 0; ; n++ {
			s.path = append(s.path, pathStep{index: n})
			if !s.value(depth + 1) {
				return false
			}
			s.path = s.path[:len(s.path)-1]
			if !s.more() {
				return s.end(']')
			}
		}
	default: // a number or a literal: the decoder checks it
		for s.i < len(s.b) && !strings.ContainsRune(",:]}\"{[ \t\r\n", rune(s.b[s.i])) {
			s.i++
		}
		return true
	}
}

// more reports whether a comma follows, moving past it.
func (s *textScanner) more() bool {
	if s.space(); s.at(',') {
		s.i++
		return true
	}
	return false
}

// end reports whether close follows, moving past it.
func (s *textScanner) end(close byte) bool {
	if s.at(close) {
		s.i++
		return true
	}
	return false
}

func (s *textScanner) at(c byte) bool { return s.i < len(s.b) && s.b[s.i] == c }

func (s *textScanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\r' || s.b[s.i] == '\n') {
		s.i++
	}
}

// stringEnd returns the offset after the closing quote of the string at
// s.i, or -1 when it does not end.
func (s *textScanner) stringEnd() int {
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '"':
			return j + 1
		case '\\':
			j++
		}
	}
	return -1
}

// str checks the text of the string at s.i and moves past it. It decides
// as encoding/json's unquote does: a rune that does not decode is invalid
// UTF-8 (surrogates encoded as UTF-8 included), and a \u escape of a
// surrogate stands only as a high one followed by a \u escape of a low one.
func (s *textScanner) str(key bool) bool {
	end := s.stringEnd()
	if end < 0 {
		return false
	}
	text := s.b[:end-1]
	for i := s.i + 1; i < len(text); {
		c := text[i]
		switch {
		case c == '\\' && i+1 < len(text) && text[i+1] == 'u':
			r := hex4(text[i+2:])
			if r < 0 {
				return false // malformed escape: the decoder refuses it
			}
			if r < 0xD800 || r > 0xDFFF {
				i += 6
				continue
			}
			if r < 0xDC00 && i+12 <= len(text) && text[i+6] == '\\' && text[i+7] == 'u' {
				if low := hex4(text[i+8:]); low >= 0xDC00 && low <= 0xDFFF {
					i += 12
					continue
				}
			}
			s.report(i, key, fmt.Sprintf("not valid text: %s is half of a UTF-16 surrogate pair without its other half", text[i:i+6]))
			return false
		case c == '\\':
			i += 2
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(text[i:])
			if r == utf8.RuneError && n == 1 {
				s.report(i, key, fmt.Sprintf("not valid UTF-8: byte 0x%02x", c))
				return false
			}
			i += n
		}
	}
	s.i = end
	return true
}

func (s *textScanner) report(offset int, key bool, reason string) {
	s.bad = &alteredText{offset: offset, path: append([]pathStep(nil), s.path...), key: key, reason: reason}
}

// hex4 decodes the four hex digits b starts with, or returns -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}
