package layout

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
)

// The limits every function in the module keeps (tests included), outside generated
// code: a function a reader cannot hold at once is split.
const (
	maxLines      = 120
	maxCyclomatic = 30
)

// pending lists functions over a limit that another change is splitting, with who; the
// test fails when one of them is back within the limits (take it off the list) and for
// any function over a limit that is not listed.
var pending = map[string]string{}

// funcInfo is one function's size.
type funcInfo struct {
	name       string // package-relative path: dir.Func or dir.Type.Method
	pos        string
	lines      int
	cyclomatic int
}

// generated is the marker of generated files (go.dev/s/generatedcode).
var generated = regexp.MustCompile(`(?m)^// Code generated .* DO NOT EDIT\.$`)

// moduleFuncs parses every Go file of the module (not .deps, not generated) and
// returns its functions.
func moduleFuncs(t *testing.T) []funcInfo {
	t.Helper()
	root := testenv.ModuleRoot(t)
	var out []funcInfo
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "out" || name == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if generated.Match(src) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			start, end := fset.Position(fn.Pos()), fset.Position(fn.End())
			out = append(out, funcInfo{name: rel + "." + funcName(fn), lines: end.Line - start.Line + 1,
				pos: fmt.Sprintf("%s:%d", filepath.Join(rel, filepath.Base(path)), start.Line), cyclomatic: cyclomatic(fn)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func funcName(fn *ast.FuncDecl) string {
	if fn.Recv == nil || len(fn.Recv.List) == 0 {
		return fn.Name.Name
	}
	typ := fn.Recv.List[0].Type
	for {
		switch x := typ.(type) {
		case *ast.StarExpr:
			typ = x.X
			continue
		case *ast.IndexExpr:
			typ = x.X
			continue
		case *ast.IndexListExpr:
			typ = x.X
			continue
		case *ast.Ident:
			return x.Name + "." + fn.Name.Name
		}
		return fn.Name.Name
	}
}

// cyclomatic is gocyclo's count: 1, plus 1 for each if, for, range, non-default case
// and select case, and each && and || — over the function, closures included.
func cyclomatic(fn *ast.FuncDecl) int {
	c := 1
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			c++
		case *ast.CaseClause:
			if x.List != nil {
				c++
			}
		case *ast.CommClause:
			if x.Comm != nil {
				c++
			}
		case *ast.BinaryExpr:
			if x.Op == token.LAND || x.Op == token.LOR {
				c++
			}
		}
		return true
	})
	return c
}

// No function is over 120 lines or cyclomatic complexity 30 (gocyclo's rule).
func TestFunctionSize(t *testing.T) {
	funcs := moduleFuncs(t)
	if len(funcs) < 500 {
		t.Fatalf("only %d functions found: the walk missed the module", len(funcs))
	}
	var over []string
	seen := map[string]bool{}
	for _, f := range funcs {
		if f.lines <= maxLines && f.cyclomatic <= maxCyclomatic {
			continue
		}
		seen[f.name] = true
		if who, ok := pending[f.name]; ok {
			t.Logf("pending (%s): %s at %s: %d lines, cyclomatic %d", who, f.name, f.pos, f.lines, f.cyclomatic)
			continue
		}
		over = append(over, fmt.Sprintf("%s at %s: %d lines, cyclomatic %d", f.name, f.pos, f.lines, f.cyclomatic))
	}
	sort.Strings(over)
	for _, o := range over {
		t.Errorf("over the limits (%d lines, cyclomatic %d): %s", maxLines, maxCyclomatic, o)
	}
	for name, who := range pending {
		if !seen[name] {
			t.Errorf("%s is within the limits now (%s): take it off the pending list", name, who)
		}
	}
}

// The counter itself, on functions whose count is known by hand.
func TestCyclomaticCount(t *testing.T) {
	src := `package p
func a() {}
func b(x int) int { if x > 0 && x < 9 || x == 20 { return 1 }; for i := range x { _ = i }; return 0 }
func c(x int) { switch x { case 1, 2: case 3: default: }; select { case <-make(chan int): default: } }
func d() { f := func(y bool) { if y {} }; f(true) }
`
	f, err := parser.ParseFile(token.NewFileSet(), "p.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a": 1, "b": 5, "c": 4, "d": 2}
	for _, decl := range f.Decls {
		fn := decl.(*ast.FuncDecl)
		if got := cyclomatic(fn); got != want[fn.Name.Name] {
			t.Errorf("cyclomatic(%s) = %d, want %d", fn.Name.Name, got, want[fn.Name.Name])
		}
	}
}
