package bench

import (
	"go/parser"
	"go/token"
	"strconv"
	"testing"
)

// TestBuildProgramImportsWhatItUses parses the build workload's program
// and checks that every package it calls is imported, so that a broken
// program fails here rather than in the middle of a benchmark run.
func TestBuildProgramImportsWhatItUses(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "main.go", buildProgram, 0)
	if err != nil {
		t.Fatalf("the build program does not parse: %v", err)
	}
	imported := map[string]bool{}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		imported[p] = true
	}
	for _, unresolved := range f.Unresolved {
		switch unresolved.Name {
		case "bufio", "fmt", "os", "sort", "strings", "io", "bytes", "strconv":
			if !imported[unresolved.Name] {
				t.Errorf("the build program uses %s without importing it", unresolved.Name)
			}
		}
	}
}
