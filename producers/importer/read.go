package importer

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/omnisync/omnisync/pkg/normalize"
)

// row is one record of a file: its first line, its raw bytes (for the
// dead letter) and its cells by column, or why it could not be read.
type row struct {
	line  int
	raw   []byte
	cells map[string]string
	// nested names the JSON members holding objects or arrays of them,
	// which no field can take: the row is rejected only when one of them
	// is imported (an export's provenance and messages are not).
	nested []string
	err    *normalize.ValidationError
}

// rows reads a file's records; next returns io.EOF after the last one and
// another error when the file cannot be read on.
type rows interface {
	next() (row, error)
}

// csvRows reads CSV with a header line: every record must have as many
// fields as the header.
type csvRows struct {
	r      *csv.Reader
	src    io.ReaderAt
	header []string
	at     int64 // input offset of the next record
}

func newCSVRows(in io.Reader, src io.ReaderAt) (*csvRows, error) {
	r := csv.NewReader(in)
	r.ReuseRecord = false
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty; want a header line naming the columns")
	}
	if err != nil {
		return nil, fmt.Errorf("header line: %w", err)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // the byte-order mark spreadsheets write
	seen := map[string]bool{}
	for i, h := range header {
		if !utf8.ValidString(h) {
			return nil, fmt.Errorf("header line: column %d is not valid UTF-8 (is the file in another encoding? save it as UTF-8)", i+1)
		}
		if seen[h] {
			return nil, fmt.Errorf("header line: column %q appears twice", h)
		}
		seen[h] = true
	}
	r.FieldsPerRecord = len(header)
	return &csvRows{r: r, src: src, header: header, at: r.InputOffset()}, nil
}

func (c *csvRows) next() (row, error) {
	rec, err := c.r.Read()
	start, end := c.at, c.r.InputOffset()
	c.at = end
	if errors.Is(err, io.EOF) {
		return row{}, io.EOF
	}
	raw := make([]byte, end-start)
	if _, rerr := c.src.ReadAt(raw, start); rerr != nil && !errors.Is(rerr, io.EOF) {
		return row{}, rerr
	}
	raw = bytes.TrimRight(raw, "\r\n")
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		r := row{line: pe.StartLine, raw: raw}
		if errors.Is(err, csv.ErrFieldCount) {
			r.err = normalize.Invalid("", "%d columns, the header has %d", len(rec), len(c.header))
		} else {
			r.err = normalize.Invalid("", "malformed CSV at line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
		}
		return r, nil
	}
	if err != nil {
		return row{}, err
	}
	line, _ := c.r.FieldPos(0)
	cells := make(map[string]string, len(rec))
	for i, v := range rec {
		cells[c.header[i]] = v
	}
	return row{line: line, raw: raw, cells: cells}, nil
}

// jsonlRows reads one JSON object a line; its members are the columns:
// strings, numbers, booleans, or arrays of strings (tags); null is absent.
type jsonlRows struct {
	r    *bufio.Reader
	line int
	sep  string
}

func (j *jsonlRows) next() (row, error) {
	for {
		b, err := j.r.ReadBytes('\n')
		if len(b) == 0 && err != nil {
			return row{}, err // io.EOF at the end
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return row{}, err
		}
		j.line++
		b = bytes.TrimRight(b, "\r\n")
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		r := row{line: j.line, raw: b}
		r.cells, r.nested, r.err = j.parse(b)
		return r, nil
	}
}

func (j *jsonlRows) parse(b []byte) (map[string]string, []string, *normalize.ValidationError) {
	if invalid := normalize.CheckJSONText(b); invalid != nil {
		return nil, nil, invalid
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, nil, normalize.Invalid("", "not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, nil, normalize.Invalid("", "data after the JSON object")
	}
	cells, nested := Cells(obj, j.sep)
	return cells, nested, nil
}

// Cells reads a JSON object's members as cells: strings, numbers,
// booleans, arrays of strings (joined by sep); null is absent; nested
// names the members holding anything else (objects, mixed arrays).
func Cells(obj map[string]any, sep string) (cells map[string]string, nested []string) {
	cells = make(map[string]string, len(obj))
members:
	for k, v := range obj {
		switch v := v.(type) {
		case nil:
		case string:
			cells[k] = v
		case json.Number:
			cells[k] = v.String()
		case bool:
			cells[k] = strconv.FormatBool(v)
		case []any:
			parts := make([]string, 0, len(v))
			for _, e := range v {
				s, ok := e.(string)
				if !ok {
					nested = append(nested, k)
					continue members
				}
				parts = append(parts, s)
			}
			cells[k] = strings.Join(parts, sep)
		default:
			nested = append(nested, k)
		}
	}
	return cells, nested
}

// xmlRows reads the children of the root element as records and their
// child elements as columns:
//
//	<customers><customer><id>C-1</id><name>李娜</name></customer>…</customers>
//
// An XML syntax error (broken UTF-8 among them) ends the import: the
// parser cannot find the next record after one.
type xmlRows struct {
	d     *xml.Decoder
	src   io.ReaderAt
	depth int
}

func (x *xmlRows) next() (row, error) {
	for {
		start := x.d.InputOffset()
		tok, err := x.d.Token()
		if errors.Is(err, io.EOF) {
			if x.depth != 0 {
				return row{}, errors.New("XML: the file ends inside an element")
			}
			return row{}, io.EOF
		}
		if err != nil {
			line, _ := x.d.InputPos()
			return row{}, fmt.Errorf("XML, line %d: %w", line, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if x.depth == 0 {
				x.depth = 1
				continue
			}
			line, _ := x.d.InputPos()
			var rec struct {
				Fields []struct {
					XMLName xml.Name
					Value   string `xml:",chardata"`
				} `xml:",any"`
			}
			if err := x.d.DecodeElement(&rec, &t); err != nil {
				return row{}, fmt.Errorf("XML, record at line %d: %w", line, err)
			}
			end := x.d.InputOffset()
			raw := make([]byte, end-start)
			if _, err := x.src.ReadAt(raw, start); err != nil && !errors.Is(err, io.EOF) {
				return row{}, err
			}
			r := row{line: line, raw: bytes.TrimSpace(raw), cells: map[string]string{}}
			for _, f := range rec.Fields {
				if _, dup := r.cells[f.XMLName.Local]; dup && r.err == nil {
					r.err = normalize.Invalid(f.XMLName.Local, "appears twice in the record")
				}
				r.cells[f.XMLName.Local] = f.Value
			}
			return r, nil
		case xml.EndElement:
			x.depth--
		}
	}
}
