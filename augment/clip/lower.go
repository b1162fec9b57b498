package clip

import (
	"strings"
	"unicode"
)

// PyLower is Python's str.lower, which HF's tokenizer applies: Unicode's full lowercase
// mapping, where Go's strings.ToLower uses the simple one. They differ in two places:
// U+0130 (İ) becomes "i" + U+0307 (SpecialCasing.txt's one unconditional lowercase
// entry), and U+03A3 (Σ) becomes final ς at the end of a word (Python's
// handle_capital_sigma in Objects/unicodeobject.c). Language-specific rules (Turkish,
// Lithuanian) are not applied, as Python does not apply them.
func PyLower(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s))
	for i, r := range rs {
		switch r {
		case 'İ':
			b.WriteString("i\u0307")
		case 'Σ':
			if finalSigma(rs, i) {
				b.WriteRune('ς')
			} else {
				b.WriteRune('σ')
			}
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// finalSigma is Unicode's Final_Sigma condition as Python tests it: a cased letter
// before (skipping case-ignorable ones) and none after (skipping case-ignorable ones).
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && caseIgnorable(rs[j]) {
		j--
	}
	if j < 0 || !cased(rs[j]) {
		return false
	}
	j = i + 1
	for j < len(rs) && caseIgnorable(rs[j]) {
		j++
	}
	return j == len(rs) || !cased(rs[j])
}

// cased is Unicode's Cased property: Lowercase, Uppercase or titlecase letters.
func cased(r rune) bool {
	return unicode.In(r, unicode.Ll, unicode.Lu, unicode.Lt, unicode.Other_Lowercase, unicode.Other_Uppercase)
}

// wordBreakIgnorable are the Word_Break MidLetter, MidNumLet and Single_Quote
// characters (WordBreakProperty.txt), which count as case-ignorable.
var wordBreakIgnorable = map[rune]bool{
	0x27: true, 0x2E: true, 0x3A: true, 0xB7: true, 0x387: true, 0x55F: true, 0x5F4: true,
	0x2018: true, 0x2019: true, 0x2024: true, 0x2027: true, 0xFE13: true, 0xFE52: true,
	0xFE55: true, 0xFF07: true, 0xFF0E: true, 0xFF1A: true,
}

// caseIgnorable is Unicode's Case_Ignorable property (DerivedCoreProperties.txt).
func caseIgnorable(r rune) bool {
	return wordBreakIgnorable[r] || unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Lm, unicode.Sk)
}
