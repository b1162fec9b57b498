package capture

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// readmeRow is README's table row for a key.
func readmeRow(k sourceKey) string {
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	return "| `" + esc(k.name+"="+k.syntax) + "` | " + string(k.scope) + " | " + esc(k.def) + " | " + esc(k.doc) + " |"
}

// README's source-key table is sourceKeys, row for row: a key added, renamed or
// re-documented in one place and not the other fails here.
func TestReadmeSourceKeys(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const header = "| key | applies to | default | meaning |"
	_, table, ok := strings.Cut(string(b), header+"\n|---|---|---|---|\n")
	if !ok {
		t.Fatalf("README has no source-key table starting with %q", header)
	}
	var got []string
	for line := range strings.Lines(table) {
		if !strings.HasPrefix(line, "|") {
			break
		}
		got = append(got, strings.TrimRight(line, "\n"))
	}
	var want []string
	for _, k := range sourceKeys {
		want = append(want, readmeRow(k))
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("README's source-key table differs from sourceKeys; it should read:\n%s\n%s\n%s",
			header, "|---|---|---|---|", strings.Join(want, "\n"))
	}
}

// Every key parses its example on a source it applies to, is refused on the others, and
// where README shows a plain default, parsing that default gives what New resolves.
func TestSourceKeysTable(t *testing.T) {
	targets := map[Kind]string{KindDevice: "device:0", KindURL: "rtsp://h/s", KindVideo: "video:/v.avi", KindFolder: "folder:/f"}
	for _, k := range sourceKeys {
		if k.doc == "" || k.syntax == "" || k.def == "" || k.example == "" {
			t.Errorf("key %s: syntax, default, doc and example are all required", k.name)
		}
		for kind, target := range targets {
			_, err := ParseSources("s=" + target + "," + k.name + "=" + k.example)
			if k.scope.allows(kind) && err != nil {
				t.Errorf("%s=%s on %s: %v", k.name, k.example, kind, err)
			}
			if !k.scope.allows(kind) && (err == nil || !strings.Contains(err.Error(), "only for")) {
				t.Errorf("%s on %s: err %v, want a refusal", k.name, kind, err)
			}
		}
		for kind, target := range targets {
			if !k.scope.allows(kind) || k.defText {
				continue
			}
			cs, err := ParseSources("s=" + target + "," + k.name + "=" + strings.Trim(k.def, "`"))
			if err != nil {
				t.Errorf("%s: README's default %q does not parse: %v", k.name, k.def, err)
				continue
			}
			base, _ := ParseSources("s=" + target)
			if got, want := cs[0].withDefaults(), base[0].withDefaults(); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: README's default %q parses to %+v; New's default is %+v", k.name, k.def, got, want)
			}
		}
	}
}
