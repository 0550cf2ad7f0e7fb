package merge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/omnisync/omnisync/pkg/events"
)

// typedFields are the typed profile fields by their Avro names.
var typedFields = []string{"name", "phone", "email", "gender", "birthday", "address", "vip_level", "tags", "id_number"}

// attributePrefix starts the field name of an attribute: attributes.<key>.
const attributePrefix = "attributes."

// null is the value of a cleared register.
const null = "null"

// birthdayLayout is the text form of a birthday.
const birthdayLayout = "2006-01-02"

// validField reports whether name is a field a record can hold.
func validField(name string) bool {
	if key, ok := strings.CutPrefix(name, attributePrefix); ok {
		return key != ""
	}
	return slices.Contains(typedFields, name)
}

// write is one field assignment of an event: value is canonical JSON.
type write struct {
	field string
	value string
}

// profileWrites returns the writes an UPSERT makes, one per field and
// sorted by field: a value for every field the profile sets, null for every
// cleared field it does not also set (a value beats a clear in the same
// event). unknown counts clears and attributes naming no valid field.
func profileWrites(p *events.Profile, clears []string) (ws []write, unknown int) {
	if p != nil {
		if p.Name != nil {
			ws = append(ws, write{"name", jsonText(*p.Name)})
		}
		if p.Phone != nil {
			ws = append(ws, write{"phone", jsonText(*p.Phone)})
		}
		if p.Email != nil {
			ws = append(ws, write{"email", jsonText(*p.Email)})
		}
		if p.Gender != nil {
			ws = append(ws, write{"gender", jsonText(string(*p.Gender))})
		}
		if p.Birthday != nil {
			ws = append(ws, write{"birthday", jsonText(p.Birthday.UTC().Format(birthdayLayout))})
		}
		if p.Address != nil {
			ws = append(ws, write{"address", jsonText(addressOf(p.Address))})
		}
		if p.VIPLevel != nil {
			ws = append(ws, write{"vip_level", strconv.FormatInt(int64(*p.VIPLevel), 10)})
		}
		if p.Tags != nil {
			ws = append(ws, write{"tags", jsonText(p.Tags)})
		}
		if p.IDNumber != nil {
			ws = append(ws, write{"id_number", jsonText(*p.IDNumber)})
		}
		for k, v := range p.Attributes {
			if k == "" {
				unknown++
				continue
			}
			ws = append(ws, write{attributePrefix + k, jsonText(v)})
		}
	}
	for _, f := range clears {
		switch {
		case !validField(f):
			unknown++
		case !slices.ContainsFunc(ws, func(w write) bool { return w.field == f }):
			ws = append(ws, write{f, null})
		}
	}
	slices.SortFunc(ws, func(a, b write) int { return strings.Compare(a.field, b.field) })
	return ws, unknown
}

// address is the JSON form of an address, keyed by the Avro field names.
type address struct {
	Country    string `json:"country"`
	Province   string `json:"province"`
	City       string `json:"city"`
	District   string `json:"district"`
	Street     string `json:"street"`
	PostalCode string `json:"postal_code"`
}

func addressOf(a *events.Address) address {
	return address{a.Country, a.Province, a.City, a.District, a.Street, a.PostalCode}
}

// errInvalidValue reports a SET_VALUE text that is not a value of its field.
var errInvalidValue = errors.New("invalid value")

// ParseValue turns the text form of a value of field (as a SET_VALUE
// resolution carries it) into canonical JSON. A nil text is null: the
// field is cleared. Text forms: the plain string for name, phone, email,
// id_number and attributes; a gender symbol; YYYY-MM-DD for birthday; a
// decimal int32 for vip_level; JSON for tags (array of strings) and
// address (object with the Avro field names).
func ParseValue(field string, text *string) (string, error) {
	if text == nil {
		return null, nil
	}
	s := *text
	switch field {
	case "gender":
		switch g := events.Gender(s); g {
		case events.GenderUnknown, events.GenderMale, events.GenderFemale, events.GenderOther:
			return jsonText(s), nil
		}
		return "", fmt.Errorf("%w: gender %q is not one of UNKNOWN, MALE, FEMALE, OTHER", errInvalidValue, s)
	case "birthday":
		d, err := time.Parse(birthdayLayout, s)
		if err != nil {
			return "", fmt.Errorf("%w: birthday %q is not YYYY-MM-DD", errInvalidValue, s)
		}
		return jsonText(d.Format(birthdayLayout)), nil
	case "vip_level":
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return "", fmt.Errorf("%w: vip_level %q is not a 32-bit integer", errInvalidValue, s)
		}
		return strconv.FormatInt(n, 10), nil
	case "tags":
		var tags []string
		if err := decodeStrictJSON(s, &tags); err != nil || tags == nil {
			return "", fmt.Errorf("%w: tags %q is not a JSON array of strings", errInvalidValue, s)
		}
		return jsonText(tags), nil
	case "address":
		var a *address
		if err := decodeStrictJSON(s, &a); err != nil || a == nil {
			return "", fmt.Errorf("%w: address %q is not a JSON object of address fields", errInvalidValue, s)
		}
		return jsonText(*a), nil
	}
	return jsonText(s), nil
}

// decodeStrictJSON decodes exactly one JSON value from s into v, rejecting
// unknown object keys and trailing data.
func decodeStrictJSON(s string, v any) error {
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data")
	}
	return nil
}

// jsonText returns the canonical JSON text of v: encoding/json's output,
// without HTML escaping.
func jsonText(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic("merge: encoding a value: " + err.Error()) // strings, slices and structs of strings: cannot fail
	}
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}
