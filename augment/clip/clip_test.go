package clip

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/diagd/diagd/internal/testenv"
)

type golden struct {
	Content []int64 `json:"content_ids"`
	Padded1 []int64 `json:"tokenizer_padded77"`
	Padded2 []int64 `json:"tokenizer_2_padded77"`
}

func loadGolden(t *testing.T) map[string]golden {
	t.Helper()
	b, err := os.ReadFile(testenv.Shared(t, "reference/diag-reference-values.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Clip map[string]golden `json:"clip_tokenization"`
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Clip) < 7 {
		t.Fatalf("reference has %d tokenization cases, want 7", len(ref.Clip))
	}
	return ref.Clip
}

// tokenizerDirs makes the two SDXL tokenizer folders from the shared CLIP files: tokenizer/
// as shipped (pad <|endoftext|>) and tokenizer_2/ with SDXL-base's special_tokens_map
// (pad "!"), which is the only difference between them (spec §5.1).
func tokenizerDirs(t *testing.T) (string, string) {
	t.Helper()
	src := testenv.Shared(t, "data/clip-tokenizer")
	d2 := t.TempDir()
	for _, f := range []string{"vocab.json", "merges.txt", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d2, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sp := `{"bos_token":{"content":"<|startoftext|>"},"eos_token":{"content":"<|endoftext|>"},"pad_token":"!","unk_token":{"content":"<|endoftext|>"}}`
	if err := os.WriteFile(filepath.Join(d2, "special_tokens_map.json"), []byte(sp), 0o644); err != nil {
		t.Fatal(err)
	}
	return src, d2
}

func TestGoldenIDs(t *testing.T) {
	ref := loadGolden(t)
	d1, d2 := tokenizerDirs(t)
	t1, err := Load(d1)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := Load(d2)
	if err != nil {
		t.Fatal(err)
	}
	if t1.Pad != 49407 || t2.Pad != 0 {
		t.Fatalf("pad ids %d, %d; want 49407 (tokenizer/) and 0 (tokenizer_2/)", t1.Pad, t2.Pad)
	}
	for text, g := range ref {
		e1, e2 := t1.Encode(text), t2.Encode(text)
		if got := e1.IDs[:e1.Content]; !slices.Equal(got, g.Content) {
			t.Errorf("%q: content ids %v, want %v", text, got, g.Content)
		}
		if !slices.Equal(e1.IDs, g.Padded1) {
			t.Errorf("%q: tokenizer/ ids %v, want %v", text, e1.IDs, g.Padded1)
		}
		if !slices.Equal(e2.IDs, g.Padded2) {
			t.Errorf("%q: tokenizer_2/ ids %v, want %v", text, e2.IDs, g.Padded2)
		}
		if e1.Truncated {
			t.Errorf("%q: marked truncated", text)
		}
	}
}

// TestToyVocabulary is transformers' tests/models/clip/test_tokenization_clip.py setUp.
func TestToyVocabulary(t *testing.T) {
	dir := t.TempDir()
	vocab := []string{"l", "o", "w", "e", "r", "s", "t", "i", "d", "n", "lo", "l</w>", "w</w>", "r</w>", "t</w>",
		"low</w>", "er</w>", "lowest</w>", "newer</w>", "wider", "<unk>", "<|startoftext|>", "<|endoftext|>"}
	m := map[string]int{}
	for i, v := range vocab {
		m[v] = i
	}
	vb, _ := json.Marshal(m)
	files := map[string]string{
		"vocab.json":              string(vb),
		"merges.txt":              "#version: 0.2\nl o\nlo w</w>\ne r</w>\n",
		"special_tokens_map.json": `{"unk_token":"<unk>"}`,
	}
	for n, s := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	toks := tok.Tokenize("lower newer")
	if want := []string{"lo", "w", "er</w>", "n", "e", "w", "er</w>"}; !slices.Equal(toks, want) {
		t.Fatalf("tokens %q, want %q", toks, want)
	}
	if ids, want := tok.IDs(append(toks, "<unk>")), []int64{10, 2, 16, 9, 3, 2, 16, 20}; !slices.Equal(ids, want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	if tok.Unk != 20 {
		t.Fatalf("unk id %d, want 20", tok.Unk)
	}
	// A word with a symbol outside the toy vocabulary maps to <unk>.
	if ids := tok.IDs(tok.Tokenize("z")); !slices.Equal(ids, []int64{20}) {
		t.Fatalf("unknown word ids %v, want [20]", ids)
	}
}

func TestTruncation(t *testing.T) {
	d1, _ := tokenizerDirs(t)
	tok, err := Load(d1)
	if err != nil {
		t.Fatal(err)
	}
	// "cat" is one token (2368 per the golden "a photo of a cat"), so 100 of them are 100 tokens.
	e := tok.Encode(strings.Repeat("cat ", 100))
	if !e.Truncated || e.Dropped != 25 {
		t.Fatalf("truncated=%v dropped=%d, want true and 100-75=25", e.Truncated, e.Dropped)
	}
	if len(e.IDs) != 77 || e.IDs[0] != 49406 || e.IDs[76] != 49407 || e.IDs[1] != 2368 || e.IDs[75] != 2368 {
		t.Fatalf("ids %v: want BOS, 75×2368, EOS", e.IDs)
	}
	// Exactly 75 content tokens fit without truncation.
	if e := tok.Encode(strings.Repeat("cat ", 75)); e.Truncated || e.Content != 77 {
		t.Fatalf("75 tokens: truncated=%v content=%d", e.Truncated, e.Content)
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"  Spaced\t\tOUT \n": "spaced out",
		"a\x00b\u200bc":      "abc", // NUL and a Cf (zero-width space) are dropped
		"\u4e2d\u6587x":      "\u4e2d \u6587 x",
		"non\u00a0breaking":  "non breaking", // Zs is whitespace
		"Café":               "café",         // no accent stripping
		"Cafe\u0301":         "caf\u00e9",    // decomposed é is composed (NFC), as BasicTokenizer does
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMissingFiles(t *testing.T) {
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "vocab.json") {
		t.Fatalf("err %v, want one naming vocab.json", err)
	}
}
