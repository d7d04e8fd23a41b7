package identity

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // beat the umask
		t.Fatal(err)
	}
}

func dirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestKeystoreRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "nested")
	path := filepath.Join(dir, "keystore.json")
	in := Keystore{Mnemonic: "  " + strings.ToUpper(mnemonicB) + "\n", Alias: "u12345678"}
	if err := SaveKeystore(path, in); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKeystore(path)
	if err != nil {
		t.Fatal(err)
	}
	want := Keystore{Version: 1, Mnemonic: mnemonicB, Alias: "u12345678"}
	if got != want {
		t.Fatalf("loaded %+v; want %+v", got, want)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("keystore mode = %v, %v; want 0600", fi.Mode(), err)
		}
		for _, d := range []string{dir, filepath.Dir(dir)} {
			fi, err = os.Stat(d)
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("created dir %s mode = %v, %v; want 0700", d, fi.Mode(), err)
			}
		}
	}
	// The file is the §1.5 JSON object with exactly these fields.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	if len(fields) != 3 || fields["version"] != 1.0 || fields["mnemonic"] != mnemonicB || fields["alias"] != "u12345678" {
		t.Fatalf("file content %s", raw)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"keystore.json"}) {
		t.Fatalf("directory holds %q; want only keystore.json (no temp files)", names)
	}

	// Overwrite: empty alias, 12 words.
	if err := SaveKeystore(path, Keystore{Version: 1, Mnemonic: mnemonicA}); err != nil {
		t.Fatal(err)
	}
	got, err = LoadKeystore(path)
	if err != nil || got != (Keystore{Version: 1, Mnemonic: mnemonicA}) {
		t.Fatalf("after overwrite: %+v, %v", got, err)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"keystore.json"}) {
		t.Fatalf("directory holds %q after overwrite", names)
	}
}

func TestKeystoreExistingDirNotChanged(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX modes")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := SaveKeystore(filepath.Join(dir, "ks.json"), Keystore{Mnemonic: mnemonicA}); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Fatalf("SaveKeystore changed the mode of an existing directory to %v", fi.Mode())
	}
}

func TestSaveKeystoreValidates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ks.json")
	if err := SaveKeystore(path, Keystore{Mnemonic: mnemonicA, Alias: "u00000001"}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	for _, tc := range []struct {
		ks   Keystore
		want error
	}{
		{Keystore{Mnemonic: strings.Replace(mnemonicA, "about", "zoo", 1)}, ErrChecksum},
		{Keystore{Mnemonic: strings.Replace(mnemonicA, "about", "abuot", 1)}, ErrUnknownWord},
		{Keystore{}, ErrWordCount},
		{Keystore{Mnemonic: mnemonicA, Alias: "12345678"}, ErrInvalidAlias},
		{Keystore{Mnemonic: mnemonicA, Alias: "u1234567"}, ErrInvalidAlias},
		{Keystore{Version: 2, Mnemonic: mnemonicA}, ErrKeystoreVersion},
		{Keystore{Version: -1, Mnemonic: mnemonicA}, ErrKeystoreVersion},
	} {
		err := SaveKeystore(path, tc.ks)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("SaveKeystore(%v) = %v; want %v naming the path", tc.ks, err, tc.want)
		}
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("a refused save changed the existing keystore")
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"ks.json"}) {
		t.Fatalf("directory holds %q; want only ks.json", names)
	}
}

func TestSaveKeystoreFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	// The target is a non-empty directory: the final rename fails.
	path := filepath.Join(dir, "ks.json")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := SaveKeystore(path, Keystore{Mnemonic: mnemonicA}); err == nil {
		t.Fatal("SaveKeystore over a directory succeeded")
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"ks.json"}) {
		t.Fatalf("directory holds %q after a failed save; want no temp files", names)
	}
	// The parent "directory" is a file: MkdirAll fails.
	file := filepath.Join(dir, "plain")
	writeFile(t, file, "x", 0o600)
	if err := SaveKeystore(filepath.Join(file, "ks.json"), Keystore{Mnemonic: mnemonicA}); err == nil {
		t.Fatal("SaveKeystore under a regular file succeeded")
	}
}

func TestLoadKeystoreNotFound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.json")
	_, err := LoadKeystore(path)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v; want fs.ErrNotExist naming %s", err, path)
	}
	for _, e := range []error{ErrKeystoreCorrupt, ErrKeystorePermissions, ErrKeystoreVersion} {
		if errors.Is(err, e) {
			t.Fatalf("not-found error also matches %v", e)
		}
	}
}

func TestLoadKeystorePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX modes")
	}
	dir := t.TempDir()
	content := fmt.Sprintf(`{"version":1,"mnemonic":%q,"alias":""}`, mnemonicA)
	for _, tc := range []struct {
		mode os.FileMode
		what string
	}{
		{0o644, "readable"}, {0o640, "readable"}, {0o604, "readable"}, {0o666, "readable"},
		{0o620, "writable"}, {0o602, "writable"}, {0o610, "accessible"}, {0o601, "accessible"},
	} {
		path := filepath.Join(dir, fmt.Sprintf("ks%o.json", tc.mode))
		writeFile(t, path, content, tc.mode)
		_, err := LoadKeystore(path)
		if !errors.Is(err, ErrKeystorePermissions) {
			t.Errorf("mode %o: err = %v; want ErrKeystorePermissions", tc.mode, err)
			continue
		}
		want := fmt.Sprintf("identity: keystore %s is %s by others (mode %04o); run chmod 600 %s", path, tc.what, tc.mode, path)
		if err.Error() != want {
			t.Errorf("mode %o: message %q; want %q", tc.mode, err, want)
		}
	}
	// Permissions are checked before the content is even parsed.
	path := filepath.Join(dir, "open-and-corrupt.json")
	writeFile(t, path, "{", 0o644)
	if _, err := LoadKeystore(path); !errors.Is(err, ErrKeystorePermissions) || errors.Is(err, ErrKeystoreCorrupt) {
		t.Errorf("open and corrupt: err = %v; want only ErrKeystorePermissions", err)
	}
	// 0400 and 0600 are fine.
	for _, mode := range []os.FileMode{0o400, 0o600} {
		path := filepath.Join(dir, fmt.Sprintf("ok%o.json", mode))
		writeFile(t, path, content, mode)
		if _, err := LoadKeystore(path); err != nil {
			t.Errorf("mode %o: %v", mode, err)
		}
	}
}

func TestLoadKeystoreCorrupt(t *testing.T) {
	dir := t.TempDir()
	valid := func(extra string) string {
		return fmt.Sprintf(`{"version":1,"mnemonic":%q,"alias":"u12345678"%s}`, mnemonicA, extra)
	}
	for _, tc := range []struct {
		name, content string
		also          error
		contains      string
	}{
		{"empty", "", nil, "invalid JSON"},
		{"truncated", valid("")[:30], nil, "invalid JSON"},
		{"array", "[]", nil, "invalid JSON"},
		{"string", `"x"`, nil, "invalid JSON"},
		{"unknown field", valid(`,"passphrase":"x"`), nil, `unknown field "passphrase"`},
		{"trailing object", valid("") + "{}", nil, "data after the JSON object"},
		{"trailing garbage", valid("") + "x", nil, "data after the JSON object"},
		{"version as string", `{"version":"1","mnemonic":"` + mnemonicA + `"}`, nil, "invalid JSON"},
		{"mnemonic as number", `{"version":1,"mnemonic":12}`, nil, "invalid JSON"},
		{"too large", valid("") + strings.Repeat(" ", 70<<10), nil, "larger than 64 KiB"},
		{"bad checksum", strings.Replace(valid(""), "about", "zoo", 1), ErrChecksum, "invalid mnemonic: mnemonic checksum does not match"},
		{"bad word", strings.Replace(valid(""), "about", "abuot", 1), ErrUnknownWord, "invalid mnemonic: word 12 is not in the BIP39 English word list"},
		{"no mnemonic", `{"version":1}`, ErrWordCount, "invalid mnemonic: mnemonic has 0 words"},
		{"bad alias", strings.Replace(valid(""), "u12345678", "bob", 1), ErrInvalidAlias, `is corrupt: invalid alias "bob": want u followed by 8 digits`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".json")
			writeFile(t, path, tc.content, 0o600)
			_, err := LoadKeystore(path)
			if !errors.Is(err, ErrKeystoreCorrupt) {
				t.Fatalf("err = %v; want ErrKeystoreCorrupt", err)
			}
			if tc.also != nil && !errors.Is(err, tc.also) {
				t.Fatalf("err = %v; want it to match %v too", err, tc.also)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "identity: keystore "+path+" is corrupt: ") || !strings.Contains(msg, tc.contains) {
				t.Fatalf("message %q; want the path and %q", msg, tc.contains)
			}
			if strings.Contains(msg, "abuot") {
				t.Fatalf("message %q echoes a mnemonic word", msg)
			}
		})
	}
	// A directory is not a keystore.
	sub := filepath.Join(dir, "isdir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeystore(sub); !errors.Is(err, ErrKeystoreCorrupt) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("LoadKeystore(dir) = %v", err)
	}
}

func TestLoadKeystoreVersion(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content, hint string
	}{
		{fmt.Sprintf(`{"version":2,"mnemonic":%q,"alias":""}`, mnemonicA), "has version 2; this duet reads version 1 (upgrade duet to read it)"},
		{fmt.Sprintf(`{"mnemonic":%q,"alias":""}`, mnemonicA), "has version 0; this duet reads version 1 (it was not written by duet)"},
		{fmt.Sprintf(`{"version":-3,"mnemonic":%q}`, mnemonicA), "has version -3"},
		{"null", "has version 0"},
	} {
		path := filepath.Join(dir, "ks.json")
		writeFile(t, path, tc.content, 0o600)
		_, err := LoadKeystore(path)
		if !errors.Is(err, ErrKeystoreVersion) || !strings.Contains(err.Error(), path+" "+tc.hint) {
			t.Errorf("%s: err = %v; want ErrKeystoreVersion with %q", tc.content, err, tc.hint)
		}
	}
}

func TestLoadKeystoreAcceptsHandWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ks.json")
	// Pretty-printed, alias missing, mnemonic not normalised.
	writeFile(t, path, "{\n  \"version\": 1,\n  \"mnemonic\": \" "+strings.ToUpper(mnemonicA)+" \"\n}\n", 0o600)
	ks, err := LoadKeystore(path)
	if err != nil || ks != (Keystore{Version: 1, Mnemonic: mnemonicA}) {
		t.Fatalf("LoadKeystore = %+v, %v", ks, err)
	}
}

func TestKeystoreDoesNotPrintMnemonic(t *testing.T) {
	ks := Keystore{Version: 1, Mnemonic: mnemonicB, Alias: "u12345678"}
	var sb strings.Builder
	slog.New(slog.NewJSONHandler(&sb, nil)).Info("x", "ks", ks, "ksp", &ks)
	out := fmt.Sprintf("%v %+v %#v %s %v", ks, ks, ks, ks, &ks) + sb.String()
	if strings.Contains(out, "sausage") || !strings.Contains(out, "u12345678") {
		t.Fatalf("output: %s", out)
	}
	// JSON encoding is unaffected: it is the file format.
	b, _ := json.Marshal(ks)
	if !strings.Contains(string(b), mnemonicB) {
		t.Fatalf("json.Marshal lost the mnemonic: %s", b)
	}
}
