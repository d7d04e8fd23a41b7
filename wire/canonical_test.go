package wire

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"
)

func TestCanonicalize(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{
			// RFC 8785 §3.2.3: sorting by UTF-16 code units. U+1F600 (D83D DE00)
			// sorts before U+FB33 although its UTF-8 is larger.
			name: "RFC 8785 3.2.3 sorting",
			in: `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`,
			want: `{"\r":"Carriage Return","1":"One","` + "\u0080" + `":"Control","ö":"Latin Small Letter O With Diaeresis","€":"Euro Sign","😀":"Emoji: Grinning Face","` + "\ufb33" + `":"Hebrew Letter Dalet With Dagesh"}`,
		},
		{
			// RFC 8785 §3.2.2 with its float array left out (outside the subset).
			name: "RFC 8785 3.2.2 without floats",
			in: `{
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			want: `{"literals":[null,true,false],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
		{
			name: "UTF-16 order differs from byte order",
			in:   `{"\ue000":1,"\ud83d\ude00":2,"\uffff":3,"a":4}`,
			want: `{"a":4,"😀":2,"` + "\ue000" + `":1,"` + "\uffff" + `":3}`,
		},
		{
			name: "nested objects sorted recursively",
			in:   `{"b":{"d":[3,{"z":1,"a":2}],"c":null},"a":true, "_x":{}, "A":[]}`,
			want: `{"A":[],"_x":{},"a":true,"b":{"c":null,"d":[3,{"a":2,"z":1}]}}`,
		},
		{
			name: "minimal escapes",
			in:   `"\u0000\u001F\b\f\n\r\t\"\\\/\u007f\u2028\u00e9 é 😀 <>&"`,
			want: `"\u0000\u001f\b\f\n\r\t\"\\/` + "\u007f\u2028é é 😀 <>&" + `"`,
		},
		{
			name: "integers at the limits",
			in:   " [0, -1, 1, 9007199254740991, -9007199254740991, 10] ",
			want: "[0,-1,1,9007199254740991,-9007199254740991,10]",
		},
		{name: "prefix key sorts first", in: `{"ab":1,"a":2,"":3}`, want: `{"":3,"a":2,"ab":1}`},
		{name: "scalar", in: "\t\r\n true \n", want: "true"},
		{name: "empty string", in: `""`, want: `""`},
		{name: "uppercase hex escape", in: `"\u00E9\uD83D\uDE00"`, want: `"é😀"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if err != nil {
				t.Fatalf("Canonicalize: %v", err)
			}
			if string(got) != tc.want {
				t.Fatalf("Canonicalize =\n%s\nwant\n%s", got, tc.want)
			}
			again, err := Canonicalize(got)
			if err != nil || string(again) != tc.want {
				t.Fatalf("Canonicalize(canonical) = %s, %v; want it unchanged", again, err)
			}
		})
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	for _, tc := range []struct{ name, in string }{
		{"empty input", ""},
		{"whitespace only", "  "},
		{"duplicate key", `{"a":1,"a":1}`},
		{"duplicate key via escape", `{"a":1,"\u0061":2}`},
		{"nested duplicate key", `{"x":[{"k":1,"j":2,"k":3}]}`},
		{"fraction", `{"a":1.5}`},
		{"integral fraction", `1.0`},
		{"exponent", `1e3`},
		{"upper exponent", `1E3`},
		{"RFC 8785 number 1E30", `[1E30]`},
		{"minus zero", `-0`},
		{"minus zero in array", `[1,-0]`},
		{"2^53", `9007199254740992`},
		{"-2^53", `-9007199254740992`},
		{"huge", `123456789012345678901234567890`},
		{"leading zero", `01`},
		{"negative leading zero", `-01`},
		{"plus sign", `+1`},
		{"bare minus", `-`},
		{"NaN", `NaN`},
		{"Infinity", `-Infinity`},
		{"invalid UTF-8 in string", "\"\xff\""},
		{"invalid UTF-8 in key", "{\"\xc3\":1}"},
		{"UTF-8 encoded surrogate", "\"\xed\xa0\x80\""},
		{"overlong UTF-8", "\"\xc0\xaf\""},
		{"invalid UTF-8 outside string", "\xef\xbb\xbf{}"},
		{"lone high surrogate", `"\ud83d"`},
		{"lone high surrogate then text", `"\ud83dx"`},
		{"high surrogate then non-surrogate escape", `"\ud83d\u0041"`},
		{"two high surrogates", `"\ud83d\ud83d"`},
		{"lone low surrogate", `"\ude00"`},
		{"lone surrogate in key", `{"\udfff":1}`},
		{"raw control character", "\"a\tb\""},
		{"raw newline", "\"a\nb\""},
		{"invalid escape", `"\x41"`},
		{"truncated unicode escape", `"\u12"`},
		{"bad hex digit", `"\u12g4"`},
		{"unterminated string", `"abc`},
		{"unterminated escape", `"abc\`},
		{"trailing comma in object", `{"a":1,}`},
		{"trailing comma in array", `[1,]`},
		{"missing colon", `{"a" 1}`},
		{"non-string key", `{1:1}`},
		{"single quotes", `{'a':1}`},
		{"unclosed object", `{"a":1`},
		{"unclosed array", `[1`},
		{"trailing data", `{} {}`},
		{"trailing garbage after number", `12a`},
		{"bad literal", `tru`},
		{"capitalized literal", `True`},
		{"comment", `{} // x`},
		{"depth 33", deep(MaxJSONDepth + 1)},
		{"depth 33 objects", strings.Repeat(`{"a":`, MaxJSONDepth+1) + "1" + strings.Repeat("}", MaxJSONDepth+1)},
		{"too large", `"` + strings.Repeat("a", MaxJSONSize-1) + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tc.in))
			if !errors.Is(err, ErrInvalidJSON) {
				t.Fatalf("Canonicalize(%.60q) = %q, %v; want ErrInvalidJSON", tc.in, got, err)
			}
		})
	}
}

func TestCanonicalizeLimitsAccepted(t *testing.T) {
	deep := strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)
	if got, err := Canonicalize([]byte(deep)); err != nil || string(got) != deep {
		t.Errorf("depth %d: %v", MaxJSONDepth, err)
	}
	big := `"` + strings.Repeat("a", MaxJSONSize-2) + `"`
	if got, err := Canonicalize([]byte(big)); err != nil || string(got) != big {
		t.Errorf("size %d: %v", len(big), err)
	}
}

// TestCompareUTF16 checks the key order against a direct comparison of the
// UTF-16 encodings.
func TestCompareUTF16(t *testing.T) {
	alphabet := []rune{0, 'a', 'b', 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfb33, 0xffff, 0x10000, 0x1f600, 0x10ffff}
	r := rand.New(rand.NewPCG(1, 2))
	randString := func() string {
		var b strings.Builder
		for range r.IntN(4) {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	for range 20000 {
		a, b := randString(), randString()
		want := slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
		if got := compareUTF16(a, b); got != want {
			t.Fatalf("compareUTF16(%+q, %+q) = %d, want %d", a, b, got, want)
		}
	}
}

func TestCanonicalMarshal(t *testing.T) {
	mid := "0"
	got, err := CanonicalMarshal(struct {
		Z   int               `json:"z"`
		A   map[string]string `json:"a"`
		ICE ICEPayload        `json:"ice"`
		F   float64           `json:"f"`
	}{Z: 1, A: map[string]string{"y": "<", "x": "&"}, ICE: ICEPayload{Candidate: "c", SDPMid: &mid}, F: 2})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":{"x":"&","y":"<"},"f":2,"ice":{"candidate":"c","sdp_mid":"0","sdp_mline":null},"z":1}`
	if string(got) != want {
		t.Fatalf("CanonicalMarshal = %s, want %s", got, want)
	}
	for _, v := range []any{1.5, 1e300, map[string]any{"x": 0.1}, make(chan int)} {
		if _, err := CanonicalMarshal(v); !errors.Is(err, ErrInvalidJSON) {
			t.Errorf("CanonicalMarshal(%T %v) err = %v, want ErrInvalidJSON", v, v, err)
		}
	}
}
