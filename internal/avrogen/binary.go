package avrogen

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/omnisync/omnisync/pkg/avro"
)

// The binary encoders write a record's Avro binary encoding straight from
// the Go value, the bytes goavro's BinaryFromNative writes for the native
// value toNative builds (pkg/codec checks this on random values), without
// building that native value. A record they cannot encode (a schema field
// the Go type lacks, whose default would have to be written) is encoded
// through its native value instead.

// errNoBinary: the record is encoded through its native value.
var errNoBinary = errors.New("no binary encoder")

// binaryRecord returns the name of the function appending the binary
// encoding of record s from Go struct t, writing it on first use.
func (g *gen) binaryRecord(s *avro.Schema, t *goType) (string, error) {
	if t.kind != kindStruct {
		return "", fmt.Errorf("the Go type %s cannot hold record %s", t.expr, s.Name)
	}
	key := recordKey{g.prefix, s, t.expr}
	if fn, ok := g.binRecords[key]; ok {
		return fn, nil
	}
	fn := g.prefix
	if t.name != upperFirst(g.prefix) {
		fn += t.name
	}
	fn = g.unique(fn + "Append")
	g.binRecords[key] = fn
	saved, savedErr := g.tmp, g.usesErr
	g.tmp, g.usesErr = 0, false
	defer func() { g.tmp, g.usesErr = saved, savedErr }()

	var body bytes.Buffer
	for _, f := range s.Fields {
		i := slices.IndexFunc(t.fields, func(gf goField) bool { return gf.tag == f.Name })
		if i < 0 {
			return "", errNoBinary
		}
		gf := t.fields[i]
		if err := g.toBinary(&body, f.Type, gf.typ, "v."+gf.name, strconv.Quote("."+f.Name)); err != nil {
			return "", fmt.Errorf("%s.%s (Go %s.%s): %w", s.Name, f.Name, t.name, gf.name, err)
		}
	}
	fmt.Fprintf(&g.out, "// %s appends the binary encoding of v as record %s to b.\nfunc %s(b []byte, v *%s) ([]byte, error) {\n", fn, s.Name, fn, t.expr)
	if g.usesErr {
		g.out.WriteString("var err error\n")
	}
	g.out.Write(body.Bytes())
	g.out.WriteString("return b, nil\n}\n\n")
	return fn, nil
}

// enumIndex returns the name of the function returning the index of a
// symbol of s.
func (g *gen) enumIndex(s *avro.Schema) string {
	def := ""
	if s.Default != nil {
		def = *s.Default
	}
	sig := s.Name + "\x00" + strings.Join(s.Symbols, "\x00") + "\x00" + def
	if fn, ok := g.enumIndexes[sig]; ok {
		return fn
	}
	fn := g.unique("index" + shortName(s.Name))
	g.enumIndexes[sig] = fn
	fmt.Fprintf(&g.out, "// %s returns the index of sym, a symbol of enum %s.\nfunc %s(sym string) (int64, error) {\nswitch sym {\n", fn, s.Name, fn)
	for i, sym := range s.Symbols {
		fmt.Fprintf(&g.out, "case %q:\nreturn %d, nil\n", sym, i)
	}
	if s.Default != nil {
		fmt.Fprintf(&g.out, "case \"\":\nreturn %d, nil\n", slices.Index(s.Symbols, *s.Default))
	}
	fmt.Fprintf(&g.out, "}\nreturn 0, errNotASymbol(sym, %q)\n}\n\n", s.Name)
	return fn
}

// toBinary writes to w the statements appending to b the binary encoding
// of src, a Go expression of type t, for schema s. path is the Go
// expression of src's path for errors.
func (g *gen) toBinary(w *bytes.Buffer, s *avro.Schema, t *goType, src, path string) error {
	if s.Kind == avro.Union {
		inner, err := nullable(s)
		if err != nil {
			return err
		}
		null, value := slices.IndexFunc(s.Branches, func(b *avro.Schema) bool { return b.Kind == avro.Null }), 0
		if null == 0 {
			value = 1
		}
		switch t.kind {
		case kindPointer, kindSlice, kindMap:
			fmt.Fprintf(w, "if %s == nil {\nb = append(b, %d)\n} else {\nb = append(b, %d)\n", src, null*2, value*2)
			if t.kind == kindPointer {
				src, t = "(*"+src+")", t.elem
			}
		default:
			fmt.Fprintf(w, "{\nb = append(b, %d)\n", value*2)
		}
		if err := g.toBinary(w, inner, t, src, path); err != nil {
			return err
		}
		w.WriteString("}\n")
		return nil
	}
	if t.kind == kindPointer {
		fmt.Fprintf(w, "if %s == nil {\nreturn nil, at(%s, errNilValue(%q))\n}\n", src, path, typeName(s))
		return g.toBinary(w, s, t.elem, "(*"+src+")", path)
	}
	mismatch := fmt.Errorf("the Go type %s cannot hold %s", t.expr, typeName(s))
	basic := func(want ...string) bool { return t.kind == kindBasic && slices.Contains(want, t.basic) }
	conv := func(to string) string {
		if t.expr == to {
			return src
		}
		return to + "(" + src + ")"
	}
	switch s.Kind {
	case avro.Null:
		return nil
	case avro.Boolean:
		if basic("bool") {
			fmt.Fprintf(w, "b = appendBool(b, %s)\n", conv("bool"))
			return nil
		}
	case avro.Int, avro.Long:
		if t.kind == kindTime && isTime(s) {
			switch s.Logical {
			case "timestamp-millis":
				fmt.Fprintf(w, "b = appendLong(b, %s.Unix()*1e3+int64(%s.Nanosecond()/1e6))\n", src, src)
			case "timestamp-micros":
				fmt.Fprintf(w, "b = appendLong(b, %s.Unix()*1e6+int64(%s.Nanosecond()/1e3))\n", src, src)
			default: // date
				d := g.v("d")
				fmt.Fprintf(w, "%s := %s.Unix() / 86400\nif int64(int32(%s)) != %s {\nreturn nil, at(%s, errOverflow(%s, \"int\"))\n}\nb = appendLong(b, %s)\n",
					d, src, d, d, path, d, d)
			}
			return nil
		}
		if !basic("int", "int8", "int16", "int32", "int64") {
			break
		}
		if s.Kind == avro.Int && intBits[t.basic] > 32 {
			fmt.Fprintf(w, "if int64(int32(%s)) != int64(%s) {\nreturn nil, at(%s, errOverflow(int64(%s), \"int\"))\n}\n", src, src, path, src)
		}
		fmt.Fprintf(w, "b = appendLong(b, %s)\n", conv("int64"))
		return nil
	case avro.Float, avro.Double:
		if !basic("float32", "float64") {
			break
		}
		if s.Kind == avro.Float {
			fmt.Fprintf(w, "b = appendFloat(b, %s)\n", conv("float32"))
		} else {
			fmt.Fprintf(w, "b = appendDouble(b, %s)\n", conv("float64"))
		}
		return nil
	case avro.String:
		if basic("string") {
			fmt.Fprintf(w, "b = appendString(b, %s)\n", conv("string"))
			return nil
		}
	case avro.Bytes:
		if t.kind == kindBytes {
			fmt.Fprintf(w, "b = appendBytes(b, %s)\n", src)
			return nil
		}
	case avro.Fixed:
		if t.kind == kindBytes {
			fmt.Fprintf(w, "if len(%s) != %d {\nreturn nil, at(%s, errFixedSize(len(%s), %d))\n}\nb = append(b, %s...)\n", src, s.Size, path, src, s.Size, src)
			return nil
		}
	case avro.Enum:
		if basic("string") {
			e := g.v("e")
			fmt.Fprintf(w, "%s, err := %s(%s)\nif err != nil {\nreturn nil, at(%s, err)\n}\nb = appendLong(b, %s)\n", e, g.enumIndex(s), conv("string"), path, e)
			return nil
		}
	case avro.Array:
		if t.kind != kindSlice {
			break
		}
		i := g.v("i")
		fmt.Fprintf(w, "if len(%s) > 0 {\nb = appendLong(b, int64(len(%s)))\n}\nfor %s := range %s {\n", src, src, i, src)
		if err := g.toBinary(w, s.Items, t.elem, src+"["+i+"]", path+`+"["+strconv.Itoa(`+i+`)+"]"`); err != nil {
			return err
		}
		w.WriteString("}\nb = append(b, 0)\n")
		return nil
	case avro.Map:
		if t.kind != kindMap {
			break
		}
		k, x := g.v("k"), g.v("x")
		key := k
		if t.key.expr != "string" {
			key = "string(" + k + ")"
		}
		fmt.Fprintf(w, "if len(%s) > 0 {\nb = appendLong(b, int64(len(%s)))\n}\nfor %s, %s := range %s {\nb = appendString(b, %s)\n", src, src, k, x, src, key)
		if err := g.toBinary(w, s.Values, t.elem, x, path+`+"["+`+key+`+"]"`); err != nil {
			return err
		}
		w.WriteString("}\nb = append(b, 0)\n")
		return nil
	case avro.Record:
		if t.kind != kindStruct {
			break
		}
		fn, err := g.binaryRecord(s, t)
		if err != nil {
			return err
		}
		g.usesErr = true
		fmt.Fprintf(w, "if b, err = %s(b, %s); err != nil {\nreturn nil, at(%s, err)\n}\n", fn, addr(src), path)
		return nil
	default:
		return fmt.Errorf("unsupported schema type %s", s.Kind)
	}
	return mismatch
}
