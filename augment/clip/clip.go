// Package clip is the CLIP byte-level BPE tokenizer that SDXL's two text encoders use,
// reproducing Hugging Face's slow CLIPTokenizer without ftfy (DIAG's environment):
// BasicTokenizer normalisation, CLIP's pre-tokenising regex, bytes_to_unicode, BPE by
// merge rank, BOS/EOS, truncation and padding to 77 (spec §5).
package clip

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// MaxLength is the CLIP context length (model_max_length of both SDXL tokenizers).
const MaxLength = 77

// mergeCount is how many merges.txt lines HF reads: lines[1 : 49152-256-2+1].
const mergeCount = 49152 - 256 - 2

const (
	bosToken = "<|startoftext|>"
	eosToken = "<|endoftext|>"
)

// pattern is CLIP's pre-tokeniser. RE2's leftmost-first alternation matches Python's re.
// \s is ASCII here; normalisation has already turned every whitespace into ' '.
var pattern = regexp.MustCompile(`(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`)

// Tokenizer encodes text to CLIP token ids. It is safe for concurrent use once loaded
// except for its BPE cache, which is guarded by being per-call (no shared mutation).
type Tokenizer struct {
	vocab   map[string]int64
	ranks   map[[2]string]int
	byteEnc [256]string
	BOS     int64
	EOS     int64
	Pad     int64
	Unk     int64
	// MaxLength is the padded length; 77 unless the config says otherwise.
	MaxLength int
}

// Encoding is one tokenised prompt.
type Encoding struct {
	IDs       []int64 // padded to MaxLength
	Content   int     // ids before padding, BOS and EOS included
	Truncated bool    // the text had more than MaxLength-2 tokens; the tail was dropped
	Dropped   int     // how many content tokens were dropped
}

// Load reads vocab.json, merges.txt and the special tokens from dir (a tokenizer/ or
// tokenizer_2/ folder of a diffusers or optimum export).
func Load(dir string) (*Tokenizer, error) {
	vb, err := os.ReadFile(filepath.Join(dir, "vocab.json"))
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %w", err)
	}
	t := &Tokenizer{vocab: map[string]int64{}, ranks: map[[2]string]int{}, MaxLength: MaxLength}
	if err := json.Unmarshal(vb, &t.vocab); err != nil {
		return nil, fmt.Errorf("clip tokenizer: %s: %w", filepath.Join(dir, "vocab.json"), err)
	}
	mp := filepath.Join(dir, "merges.txt")
	f, err := os.Open(mp)
	if err != nil {
		return nil, fmt.Errorf("clip tokenizer: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		// HF: merges = read().strip().split("\n")[1 : 49152-256-2+1]; the first line is "#version".
		if line == 1 {
			continue
		}
		if line-1 > mergeCount {
			break
		}
		parts := strings.Fields(sc.Text())
		if len(parts) != 2 {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			return nil, fmt.Errorf("clip tokenizer: %s:%d: want two symbols, got %q", mp, line, sc.Text())
		}
		p := [2]string{parts[0], parts[1]}
		if _, dup := t.ranks[p]; !dup {
			t.ranks[p] = line - 2
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("clip tokenizer: %s: %w", mp, err)
	}
	for b, r := range bytesToUnicode() {
		t.byteEnc[b] = string(r)
	}
	sp, err := readSpecial(dir)
	if err != nil {
		return nil, err
	}
	lookup := func(field, tok string) (int64, error) {
		id, ok := t.vocab[tok]
		if !ok {
			return 0, fmt.Errorf("clip tokenizer: %s: %s %q is not in vocab.json", dir, field, tok)
		}
		return id, nil
	}
	if t.BOS, err = lookup("bos_token", sp.bos); err != nil {
		return nil, err
	}
	if t.EOS, err = lookup("eos_token", sp.eos); err != nil {
		return nil, err
	}
	if t.Unk, err = lookup("unk_token", sp.unk); err != nil {
		return nil, err
	}
	if t.Pad, err = lookup("pad_token", sp.pad); err != nil {
		return nil, err
	}
	if sp.maxLen > 0 && sp.maxLen < 1<<20 {
		t.MaxLength = sp.maxLen
	}
	return t, nil
}

type special struct {
	bos, eos, unk, pad string
	maxLen             int
}

// readSpecial merges tokenizer_config.json and special_tokens_map.json (the latter wins,
// as in HF). Defaults are CLIP's: bos <|startoftext|>, eos = unk = pad = <|endoftext|>.
func readSpecial(dir string) (special, error) {
	s := special{bos: bosToken, eos: eosToken, unk: eosToken, pad: eosToken}
	for _, name := range []string{"tokenizer_config.json", "special_tokens_map.json"} {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return s, fmt.Errorf("clip tokenizer: %w", err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return s, fmt.Errorf("clip tokenizer: %s: %w", p, err)
		}
		for key, dst := range map[string]*string{"bos_token": &s.bos, "eos_token": &s.eos, "unk_token": &s.unk, "pad_token": &s.pad} {
			raw, ok := m[key]
			if !ok || string(raw) == "null" {
				continue
			}
			v, err := tokenContent(raw)
			if err != nil {
				return s, fmt.Errorf("clip tokenizer: %s: %s: %w", p, key, err)
			}
			*dst = v
		}
		if raw, ok := m["model_max_length"]; ok {
			var n float64
			if json.Unmarshal(raw, &n) == nil && n > 0 && n < 1<<20 {
				s.maxLen = int(n)
			}
		}
	}
	return s, nil
}

// tokenContent accepts a plain string or an AddedToken object {"content": ...}.
func tokenContent(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var o struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &o); err != nil || o.Content == nil {
		return "", fmt.Errorf("want a string or an object with \"content\", got %s", raw)
	}
	return *o.Content, nil
}

// bytesToUnicode is GPT-2/CLIP's reversible byte -> printable rune table: printable
// Latin-1 bytes map to themselves, the rest to 256+n in byte order.
func bytesToUnicode() [256]rune {
	var out [256]rune
	keep := func(b int) bool {
		return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
	}
	n := 0
	for b := 0; b < 256; b++ {
		if keep(b) {
			out[b] = rune(b)
		} else {
			out[b] = rune(256 + n)
			n++
		}
	}
	return out
}

// Normalize is HF BasicTokenizer(do_lower_case=True, strip_accents=False,
// do_split_on_punc=False): drop NUL, U+FFFD and control/unassigned characters, map
// whitespace to ' ', pad CJK ideographs with spaces, NFC-normalise, split on whitespace,
// lowercase (Python's str.lower, see PyLower), join.
func Normalize(text string) string {
	var b strings.Builder
	for _, r := range text {
		switch {
		case r == 0 || r == 0xFFFD:
			continue
		case r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r):
			b.WriteByte(' ')
		case isControl(r):
			continue
		case isCJK(r):
			b.WriteByte(' ')
			b.WriteRune(r)
			b.WriteByte(' ')
		default:
			b.WriteRune(r)
		}
	}
	fields := strings.Fields(norm.NFC.String(b.String()))
	for i, f := range fields {
		fields[i] = PyLower(f)
	}
	return strings.Join(fields, " ")
}

// isControl is HF's _is_control: category C* (Cc, Cf, Co, Cs and unassigned Cn).
func isControl(r rune) bool {
	if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) {
		return true
	}
	return !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z)
}

func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) || (r >= 0x3400 && r <= 0x4DBF) || (r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) || (r >= 0x2B740 && r <= 0x2B81F) || (r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) || (r >= 0x2F800 && r <= 0x2FA1F)
}

// Tokenize returns the BPE tokens of text (no BOS/EOS), as HF's tokenize() does.
func (t *Tokenizer) Tokenize(text string) []string {
	var out []string
	for _, piece := range pattern.FindAllString(Normalize(text), -1) {
		if piece == bosToken || piece == eosToken {
			out = append(out, piece)
			continue
		}
		var enc strings.Builder
		for i := 0; i < len(piece); i++ {
			enc.WriteString(t.byteEnc[piece[i]])
		}
		out = append(out, t.bpe(enc.String())...)
	}
	return out
}

// bpe merges the lowest-ranked adjacent pair until none is ranked, like HF's bpe().
func (t *Tokenizer) bpe(token string) []string {
	var word []string
	for _, r := range token {
		word = append(word, string(r))
	}
	if len(word) == 0 {
		return nil
	}
	word[len(word)-1] += "</w>"
	for len(word) > 1 {
		best, bestRank := [2]string{}, -1
		for i := 0; i+1 < len(word); i++ {
			p := [2]string{word[i], word[i+1]}
			if r, ok := t.ranks[p]; ok && (bestRank < 0 || r < bestRank) {
				best, bestRank = p, r
			}
		}
		if bestRank < 0 {
			break
		}
		merged := word[:0:0]
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == best[0] && word[i+1] == best[1] {
				merged = append(merged, best[0]+best[1])
				i += 2
				continue
			}
			merged = append(merged, word[i])
			i++
		}
		word = merged
	}
	return word
}

// IDs maps tokens to ids; unknown tokens become Unk.
func (t *Tokenizer) IDs(tokens []string) []int64 {
	ids := make([]int64, len(tokens))
	for i, tok := range tokens {
		id, ok := t.vocab[tok]
		if !ok {
			id = t.Unk
		}
		ids[i] = id
	}
	return ids
}

// Encode is tokenizer(text, padding="max_length", max_length=MaxLength, truncation=True):
// [BOS] + ids[:MaxLength-2] + [EOS], padded with Pad.
func (t *Tokenizer) Encode(text string) Encoding {
	content := t.IDs(t.Tokenize(text))
	keep := t.MaxLength - 2
	e := Encoding{IDs: make([]int64, 0, t.MaxLength)}
	if len(content) > keep {
		e.Truncated = true
		e.Dropped = len(content) - keep
		content = content[:keep]
	}
	e.IDs = append(e.IDs, t.BOS)
	e.IDs = append(e.IDs, content...)
	e.IDs = append(e.IDs, t.EOS)
	e.Content = len(e.IDs)
	for len(e.IDs) < t.MaxLength {
		e.IDs = append(e.IDs, t.Pad)
	}
	return e
}
