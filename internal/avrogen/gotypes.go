package avrogen

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
)

// goKind is the shape of a Go type as far as the mapping cares.
type goKind int

const (
	kindBasic   goKind = iota // bool, string, intN, floatN, or a type defined on one
	kindTime                  // time.Time
	kindBytes                 // []byte
	kindPointer               // *T
	kindSlice                 // []T
	kindMap                   // map[K]T, K a string type
	kindStruct                // a struct type of the package
)

// goType is a Go type of the scanned package.
type goType struct {
	kind  goKind
	expr  string  // spelling in the generated file, e.g. events.Channel, *events.Profile
	basic string  // kindBasic: the underlying predeclared type, e.g. string
	elem  *goType // kindPointer, kindSlice, kindMap
	key   *goType // kindMap
	name  string  // kindStruct: the type's name
	// fields of a kindStruct, in declaration order; filled on first use so
	// that recursive types terminate.
	fields []goField
}

type goField struct {
	name string // Go field name
	tag  string // the name in its `avro` tag
	typ  *goType
}

// pkgTypes holds the type declarations of one Go package, read from source.
type pkgTypes struct {
	qual  string // qualifier in generated code, e.g. events
	decls map[string]ast.Expr
	memo  map[string]*goType
}

// readPackage parses the non-test Go files of dir.
func readPackage(dir, qual string) (*pkgTypes, []*ast.File, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading package %s: %w", dir, err)
	}
	p := &pkgTypes{qual: qual, decls: map[string]ast.Expr{}, memo: map[string]*goType{}}
	var files []*ast.File
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, nil, err
		}
		files = append(files, f)
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, s := range gd.Specs {
				ts := s.(*ast.TypeSpec)
				p.decls[ts.Name.Name] = ts.Type
			}
		}
	}
	return p, files, nil
}

var predeclared = map[string]string{
	"bool": "bool", "string": "string", "byte": "uint8",
	"int": "int", "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64", "rune": "int32",
	"uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "uint": "uint",
	"float32": "float32", "float64": "float64",
}

// named returns the package's type called name.
func (p *pkgTypes) named(name string) (*goType, error) {
	if t, ok := p.memo[name]; ok {
		return t, nil
	}
	decl, ok := p.decls[name]
	if !ok {
		return nil, fmt.Errorf("package %s has no type %s", p.qual, name)
	}
	expr := p.qual + "." + name
	if st, ok := decl.(*ast.StructType); ok {
		t := &goType{kind: kindStruct, expr: expr, name: name}
		p.memo[name] = t
		if err := p.readFields(t, st); err != nil {
			return nil, err
		}
		return t, nil
	}
	under, err := p.resolve(decl)
	if err != nil {
		return nil, fmt.Errorf("type %s: %w", name, err)
	}
	t := *under
	t.expr = expr
	p.memo[name] = &t
	return &t, nil
}

func (p *pkgTypes) readFields(t *goType, st *ast.StructType) error {
	for _, f := range st.Fields.List {
		if f.Tag == nil || len(f.Names) == 0 {
			continue
		}
		tagText, err := strconv.Unquote(f.Tag.Value)
		if err != nil {
			return fmt.Errorf("type %s: bad tag %s", t.name, f.Tag.Value)
		}
		tag, _, _ := strings.Cut(reflect.StructTag(tagText).Get("avro"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		ft, err := p.resolve(f.Type)
		if err != nil {
			return fmt.Errorf("field %s.%s: %w", t.name, f.Names[0].Name, err)
		}
		for _, n := range f.Names {
			if !n.IsExported() {
				return fmt.Errorf("field %s.%s has an avro tag but is not exported", t.name, n.Name)
			}
			t.fields = append(t.fields, goField{name: n.Name, tag: tag, typ: ft})
		}
	}
	return nil
}

// resolve returns the Go type a type expression of the package denotes.
func (p *pkgTypes) resolve(e ast.Expr) (*goType, error) {
	switch e := e.(type) {
	case *ast.Ident:
		if basic, ok := predeclared[e.Name]; ok {
			return &goType{kind: kindBasic, expr: e.Name, basic: basic}, nil
		}
		return p.named(e.Name)
	case *ast.StarExpr:
		elem, err := p.resolve(e.X)
		if err != nil {
			return nil, err
		}
		return &goType{kind: kindPointer, expr: "*" + elem.expr, elem: elem}, nil
	case *ast.ArrayType:
		if e.Len != nil {
			return nil, fmt.Errorf("arrays are not supported, use a slice")
		}
		elem, err := p.resolve(e.Elt)
		if err != nil {
			return nil, err
		}
		if elem.kind == kindBasic && elem.basic == "uint8" && elem.expr != "uint8" && elem.expr != "byte" {
			return nil, fmt.Errorf("slices of %s are not supported", elem.expr)
		}
		if elem.kind == kindBasic && elem.basic == "uint8" {
			return &goType{kind: kindBytes, expr: "[]byte"}, nil
		}
		return &goType{kind: kindSlice, expr: "[]" + elem.expr, elem: elem}, nil
	case *ast.MapType:
		key, err := p.resolve(e.Key)
		if err != nil {
			return nil, err
		}
		if key.kind != kindBasic || key.basic != "string" {
			return nil, fmt.Errorf("map keys must be strings, not %s", key.expr)
		}
		elem, err := p.resolve(e.Value)
		if err != nil {
			return nil, err
		}
		return &goType{kind: kindMap, expr: "map[" + key.expr + "]" + elem.expr, key: key, elem: elem}, nil
	case *ast.SelectorExpr:
		if x, ok := e.X.(*ast.Ident); ok && x.Name == "time" && e.Sel.Name == "Time" {
			return &goType{kind: kindTime, expr: "time.Time"}, nil
		}
		return nil, fmt.Errorf("type %s.%s is not supported", e.X, e.Sel.Name)
	}
	return nil, fmt.Errorf("type %T is not supported", e)
}

// stringConsts returns the string constants of type typeName declared in
// files, by value: value → constant name.
func stringConsts(files []*ast.File, typeName string) map[string]string {
	out := map[string]string{}
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != typeName {
					continue
				}
				for i, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING || i >= len(vs.Names) {
						continue
					}
					if s, err := strconv.Unquote(lit.Value); err == nil {
						out[s] = vs.Names[i].Name
					}
				}
			}
		}
	}
	return out
}
