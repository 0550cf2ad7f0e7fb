package wechat

import (
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/omnisync/omnisync/pkg/normalize"
	"github.com/omnisync/omnisync/producers/internal/wxpush"
)

// maxDepth bounds how deep elements nest below <xml>; WeChat's deepest
// (SendPicsInfo/PicList/item/PicMd5Sum) is four.
const maxDepth = 8

var _ wxpush.Push = (*push)(nil)

// push is a decoded <xml> document: the text of every leaf element, by
// name for the children of <xml> and by dotted path (ScanCodeInfo.ScanType)
// below them. Getters mark what they read; the rest goes to metadata.
type push struct {
	wxpush.Tracker // leaf paths in document order, and those read
	leaves         map[string]string
	parents        map[string]bool // children of <xml> that hold elements
	body           []byte          // as received, for checking each text's raw bytes
}

// readPush decodes a push body. It refuses DOCTYPE and entity
// declarations outright. encoding/xml would not expand them anyway: it
// never loads external entities and knows only the five predefined ones
// and character references, so &xxe; is a syntax error in strict mode.
//
// Text must be valid UTF-8 and character references must name XML
// characters; the error names the element. encoding/xml refuses most
// violations itself, but turns a reference to a UTF-16 surrogate
// (&#xD800;) into U+FFFD, so each text's raw bytes are checked too.
func readPush(body []byte) (*push, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, normalize.Invalid("", "body is empty")
	}
	if t := bytes.TrimSpace(body); t[0] == '{' || t[0] == '[' {
		return nil, normalize.Invalid("", "body is JSON; the official-account push is XML (for the mini-program's JSON push use /ingest/miniprogram)")
	}
	p := &push{leaves: map[string]string{}, parents: map[string]bool{}, body: body}
	d := xml.NewDecoder(bytes.NewReader(body))
	done := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, malformed(err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return nil, noDirectives()
		case xml.StartElement:
			if done {
				return nil, normalize.Invalid("", "content after </xml>")
			}
			if t.Name.Local != "xml" {
				return nil, normalize.Invalid("", "root element is <%s>, want <xml>", t.Name.Local)
			}
			if err := p.readRoot(d); err != nil {
				return nil, err
			}
			done = true
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return nil, normalize.Invalid("", "text outside <xml>")
			}
		}
	}
	if !done {
		return nil, normalize.Invalid("", "no <xml> element")
	}
	if !utf8.Valid(body) { // outside any element's text: a comment, an attribute
		return nil, normalize.Invalid("", "body is not valid UTF-8")
	}
	return p, nil
}

func (p *push) readRoot(d *xml.Decoder) error {
	seen := map[string]bool{}
	for {
		tok, err := d.Token()
		if err != nil {
			return malformed(err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil
		case xml.Directive:
			return noDirectives()
		case xml.CharData:
			if len(bytes.TrimSpace(t)) != 0 {
				return normalize.Invalid("", "text directly inside <xml>")
			}
		case xml.StartElement:
			name := t.Name.Local
			if seen[name] {
				return normalize.Invalid(name, "appears more than once")
			}
			seen[name] = true
			text, nested, err := p.readElement(d, name, 1)
			if err != nil {
				return err
			}
			if nested {
				p.parents[name] = true
			} else {
				p.add(name, text)
			}
		}
	}
}

// readElement reads the content of the element at path up to its end tag,
// recording nested leaves, and returns its text and whether it held
// elements.
func (p *push) readElement(d *xml.Decoder, path string, depth int) (text string, nested bool, err error) {
	var buf strings.Builder
	for {
		start := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			return "", false, normalize.Invalid(path, "malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.CharData:
			if err := checkText(path, p.body[start:d.InputOffset()]); err != nil {
				return "", false, err
			}
			buf.Write(t)
		case xml.EndElement:
			return buf.String(), nested, nil
		case xml.Directive:
			return "", false, noDirectives()
		case xml.StartElement:
			if depth >= maxDepth {
				return "", false, normalize.Invalid(path, "elements nested more than %d deep", maxDepth)
			}
			nested = true
			child := path + "." + t.Name.Local
			ctext, cnested, err := p.readElement(d, child, depth+1)
			if err != nil {
				return "", false, err
			}
			if _, dup := p.leaves[child]; !cnested && !dup { // lists keep their first item
				p.add(child, ctext)
			}
		}
	}
}

func (p *push) add(path, text string) {
	p.leaves[path] = text
	p.Add(path)
}

// checkText checks the raw bytes of one text token of the element at path
// (a run of text, or one CDATA section, whose content is literal): valid
// UTF-8, and every character reference an XML character.
func checkText(path string, raw []byte) error {
	if !utf8.Valid(raw) {
		i := 0
		for r, size := utf8.DecodeRune(raw); r != utf8.RuneError || size != 1; r, size = utf8.DecodeRune(raw[i:]) {
			i += size
		}
		return normalize.Invalid(path, "not valid UTF-8 (byte 0x%02x)", raw[i])
	}
	if bytes.HasPrefix(raw, []byte("<![CDATA[")) {
		return nil
	}
	for rest := raw; ; {
		i := bytes.Index(rest, []byte("&#"))
		if i < 0 {
			return nil
		}
		rest = rest[i+2:]
		end := bytes.IndexByte(rest, ';')
		if end < 0 {
			return nil // encoding/xml refuses it
		}
		ref := string(rest[:end])
		n, err := strconv.ParseUint(ref, 10, 32)
		if hex, ok := strings.CutPrefix(ref, "x"); ok {
			n, err = strconv.ParseUint(hex, 16, 32)
		}
		if err == nil && !isXMLChar(rune(n)) {
			return normalize.Invalid(path, "character reference &#%s; is not a character (U+%04X)", ref, n)
		}
		rest = rest[end+1:]
	}
}

// isXMLChar reports whether r is a character XML allows: tab, newline,
// carriage return and U+0020 up, except the UTF-16 surrogates, U+FFFE and
// U+FFFF.
func isXMLChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= utf8.MaxRune
}

func malformed(err error) *normalize.ValidationError {
	return normalize.Invalid("", "malformed XML: %v", err)
}

func noDirectives() *normalize.ValidationError {
	return normalize.Invalid("", "DOCTYPE and entity declarations are not allowed")
}

// Has reports whether the element is present, empty or not.
func (p *push) Has(name string) bool {
	_, leaf := p.leaves[name]
	return leaf || p.parents[name]
}

// Text returns the trimmed text of an optional element, at most max
// characters; "" when absent.
func (p *push) Text(name string, max int) (string, error) {
	p.MarkRead(name)
	if p.parents[name] {
		return "", normalize.Invalid(name, "must be text, not nested elements")
	}
	return normalize.Text(name, p.leaves[name], max)
}

// Quote returns s: an element's text is bounded where it is read.
func (p *push) Quote(s string) string { return s }

// Seconds reads a required element of Unix seconds, digits only.
func (p *push) Seconds(name string) (int64, error) {
	s, err := wxpush.Required(p, name, 64)
	if err != nil {
		return 0, err
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil || strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return 0, normalize.Invalid(name, "%q is not Unix seconds", s)
	}
	return sec, nil
}

// MsgID reads the message ID, an identifier (normalize.ID).
func (p *push) MsgID(name string) (string, error) { return wxpush.ID(p, name) }

// Extra returns an unread element's text and its metadata key, its path
// in snake_case (bizmsgmenuid, MenuId → menu_id, ScanCodeInfo.ScanType →
// scan_code_info.scan_type).
func (p *push) Extra(path string) (key, value string, err error) {
	v, err := normalize.Text(path, p.leaves[path], wxpush.MaxExtraRunes)
	if err != nil || v == "" {
		return "", "", err
	}
	if len(path) > wxpush.MaxKeyRunes {
		return "", "", normalize.Invalid(path, "element name longer than %d characters", wxpush.MaxKeyRunes)
	}
	return wxpush.MetadataKey(path), v, nil
}

// float reads a decimal number within [-limit, limit]; ok is false when the
// element is absent or empty.
func float(f wxpush.Fields, name string, limit float64) (v float64, ok bool, err error) {
	s, err := f.Text(name, 64)
	if err != nil || s == "" {
		return 0, false, err
	}
	v, err = strconv.ParseFloat(s, 64)
	if err != nil || v != v || v < -limit || v > limit { // v != v: NaN
		return 0, false, normalize.Invalid(name, "%q is not a number between %g and %g", s, -limit, limit)
	}
	return v, true, nil
}
