// Package layout holds no code: its tests check the shape of the whole module, the
// import rules README's Layout section draws (imports_test.go) and the size of every
// function (funcs_test.go), so that a change that breaks them fails in CI.
package layout
