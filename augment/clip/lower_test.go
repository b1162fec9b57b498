package clip

import (
	"strings"
	"testing"
)

// Python's str.lower on the cases where Go's strings.ToLower differs (the expected
// values follow SpecialCasing.txt and Python's final-sigma rule), and on cases where
// both agree.
func TestPyLower(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"ΟΔΟΣ", "οδος"},               // word-final sigma
		{"ΣΟΦΙΑ", "σοφια"},             // initial sigma
		{"Σ", "σ"},                     // no cased letter before: not final
		{"'Σ", "'σ"},                   // an apostrophe is case-ignorable, still nothing cased before
		{"ΑΣ.", "ας."},                 // '.' (MidNumLet) is case-ignorable: final
		{"ΑΣ.Β", "ασ.β"},               // ... and a cased letter follows it: not final
		{"ΑΣ1", "ας1"},                 // a digit is neither cased nor ignorable: final
		{"Α\u0301Σ", "α\u0301ς"},       // a combining mark before is skipped
		{"ΑΣ\u0301", "ας\u0301"},       // and after
		{"İ", "i\u0307"},               // dotted capital I: i + combining dot above
		{"İSTANBUL", "i\u0307stanbul"}, // no Turkish rule for the others
		{"ǅ", "ǆ"},                     // titlecase letter
		{"ẞ", "ß"},
		{"Crack ON Steel", "crack on steel"},
	} {
		if got := PyLower(tc.in); got != tc.want {
			t.Errorf("PyLower(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	// The cases above that motivate PyLower: Go's own ToLower gets them wrong.
	if strings.ToLower("ΟΔΟΣ") == "οδος" || strings.ToLower("İ") == "i\u0307" {
		t.Fatal("strings.ToLower now agrees with Python: PyLower may be unnecessary")
	}
	// Through the BasicTokenizer normalisation: each word is lowered on its own.
	if got, want := Normalize("ΟΔΟΣ  ΣΑ İ"), "οδος σα i\u0307"; got != want {
		t.Errorf("Normalize = %q, want %q", got, want)
	}
}
