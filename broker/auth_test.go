package broker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testHash hashes pw with few iterations, so tests connect fast; the
// iteration count is part of the hash.
func testHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := hashPassword(pw, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHashPasswordRoundTrip(t *testing.T) {
	h, err := HashPassword("s3cret pass")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "pbkdf2-sha256$600000$") {
		t.Fatalf("HashPassword = %q, want pbkdf2-sha256$600000$…", h)
	}
	c, err := parseHash(h)
	if err != nil {
		t.Fatalf("parseHash(%q): %v", h, err)
	}
	if !c.matches([]byte("s3cret pass")) {
		t.Error("the password does not match its own hash")
	}
	// The rest with few iterations: same code, a fraction of the time.
	low := testHash(t, "s3cret pass")
	if c, err = parseHash(low); err != nil {
		t.Fatalf("parseHash(%q): %v", low, err)
	}
	for _, wrong := range []string{"", "s3cret", "s3cret pass ", "S3cret pass"} {
		if c.matches([]byte(wrong)) {
			t.Errorf("%q matches the hash of another password", wrong)
		}
	}
	if !c.matches([]byte("s3cret pass")) {
		t.Error("the password does not match its own hash")
	}
	if testHash(t, "s3cret pass") == low {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
}

func TestLoadAuthFile(t *testing.T) {
	path := writeFile(t, "auth", strings.Join([]string{
		"# storeflow users",
		"",
		"user simulator " + testHash(t, "sim-pw"),
		"  user phone " + testHash(t, "phone-pw") + "\r", // CRLF and indentation are fine
		"acl simulator write customer/enter",
		"acl simulator readwrite sim/+/state",
		"acl phone read customer/prediction",
		"acl * read public/#",
		"acl camera write shelf/#", // a certificate user: no user line
	}, "\n"))
	a, err := LoadAuthFile(path)
	if err != nil {
		t.Fatal(err)
	}
	logins := []struct {
		user, pw string
		want     bool
	}{
		{"simulator", "sim-pw", true},
		{"phone", "phone-pw", true},
		{"phone", "sim-pw", false},
		{"simulator", "", false},
		{"nobody", "sim-pw", false},
		{"camera", "", false}, // certificate users have no password
		{"*", "", false},
	}
	for _, l := range logins {
		if got := a.Authenticate(l.user, []byte(l.pw)); got != l.want {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", l.user, l.pw, got, l.want)
		}
	}
	acls := []struct {
		user, topic string
		write, want bool
	}{
		{"simulator", "customer/enter", true, true},
		{"simulator", "customer/enter", false, false},
		{"simulator", "customer/exit", true, false},
		{"simulator", "sim/7/state", true, true},
		{"simulator", "sim/7/state", false, true},
		{"simulator", "sim/+/state", false, true},
		{"simulator", "sim/#", false, false},
		{"phone", "customer/prediction", false, true},
		{"phone", "customer/prediction", true, false},
		{"phone", "customer/focus", true, false},
		{"phone", "customer/#", false, false},
		{"phone", "public/news", false, true},
		{"phone", "public/#", false, true},
		{"phone", "public", false, true},
		{"phone", "public/news", true, false},
		{"camera", "shelf/3/photo", true, true},
		{"nobody", "public/x", false, true}, // * is every user; Authenticate decides who is one
		{"nobody", "customer/enter", true, false},
	}
	for _, c := range acls {
		if got := a.Allows(c.user, c.topic, c.write); got != c.want {
			t.Errorf("Allows(%q, %q, write=%v) = %v, want %v", c.user, c.topic, c.write, got, c.want)
		}
	}
}

func TestLoadAuthFileErrors(t *testing.T) {
	good := testHash(t, "pw")
	tests := []struct {
		name, content string
		want          []string
	}{
		{"unknown directive", "# c\npassword x y", []string{":2:", `unknown directive "password"`}},
		{"user without hash", "user a", []string{":1:", "want user NAME HASH"}},
		{"user with spaces after the hash", "user a " + good + " extra", []string{":1:", "want user NAME HASH"}},
		{"plain password", "user a secret", []string{":1:", `user "a"`, "pbkdf2-sha256$ITERATIONS$SALT$HASH"}},
		{"other scheme", "user a sha512$1$AAAA$AAAA", []string{":1:", "pbkdf2-sha256"}},
		{"zero iterations", "user a pbkdf2-sha256$0$AAAA$AAAA", []string{":1:", "iterations"}},
		{"absurd iterations", "user a pbkdf2-sha256$99999999999$AAAA$AAAA", []string{":1:", "iterations"}},
		{"salt not base64", "user a pbkdf2-sha256$1000$!!$AAAA", []string{":1:", "salt"}},
		{"hash not base64", "user a pbkdf2-sha256$1000$AAAA$!!", []string{":1:", "hash"}},
		{"empty hash", "user a pbkdf2-sha256$1000$AAAA$", []string{":1:", "hash"}},
		{"twice", "user a " + good + "\n\nuser a " + good, []string{":3:", "twice"}},
		{"star user", "user * " + good, []string{":1:", "reserved"}},
		{"acl too short", "acl a read", []string{":1:", "want acl NAME"}},
		{"acl access", "acl a publish x/y", []string{":1:", `"publish"`, "read, write, readwrite or retain"}},
		{"# in the middle", "acl a read x/#/y", []string{":1:", "x/#/y", "#"}},
		{"+ inside a level", "acl a read x/y+", []string{":1:", "x/y+", "+"}},
		{"line too long", "acl a read " + strings.Repeat("x", 70000), []string{":1:", "too long"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "auth", tt.content)
			_, err := LoadAuthFile(path)
			if err == nil {
				t.Fatalf("LoadAuthFile = nil error, want one naming %v", tt.want)
			}
			errorNames(t, err, append([]string{path + ":"}, tt.want...)...)
		})
	}
	if _, err := LoadAuthFile(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("LoadAuthFile(missing) = %v, want an error naming the file", err)
	}
}

func TestFilterWithin(t *testing.T) {
	tests := []struct {
		sub, acl string
		want     bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a", false},
		{"a", "a/b", false},
		{"a/b", "a/+", true},
		{"a/+", "a/+", true},
		{"a/+", "a/b", false},
		{"a/#", "a/+", false},
		{"a/b/c", "a/+", false},
		{"a", "a/#", true},
		{"a/b/c", "a/#", true},
		{"a/#", "a/#", true},
		{"#", "a/#", false},
		{"+/b", "a/b", false},
		{"x/y", "#", true},
		{"$SYS/broker/uptime", "#", false},
		{"$SYS/broker/uptime", "+/broker/uptime", false},
		{"$SYS/broker/uptime", "$SYS/#", true},
		{"a//b", "a/+/b", true},
	}
	for _, tt := range tests {
		if got := filterWithin(tt.sub, tt.acl); got != tt.want {
			t.Errorf("filterWithin(%q, %q) = %v, want %v", tt.sub, tt.acl, got, tt.want)
		}
	}
}

// FuzzParseAuth feeds the auth file parser arbitrary files: it must return
// an Auth or an error naming a line, never panic, and a parsed Auth must
// answer questions.
func FuzzParseAuth(f *testing.F) {
	f.Add([]byte("# users\nuser phone pbkdf2-sha256$1000$c2FsdHNhbHQ$a2V5a2V5a2V5\nacl phone read customer/prediction\nacl * readwrite a/+/#\n"))
	f.Add([]byte("user a pbkdf2-sha256$1$$\n"))
	f.Add([]byte("acl x write #\nacl y read +/+\n\r\n\t# c"))
	f.Add([]byte("user a b c d\nacl"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := parseAuth("fuzz", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz:") {
				t.Fatalf("error %q does not start with the file name", err)
			}
			return
		}
		for name, c := range a.users {
			if c.iter < 1 || c.iter > maxIterations || len(c.salt) == 0 || len(c.key) == 0 {
				t.Fatalf("user %q: bad credential %+v", name, c)
			}
		}
		for _, r := range a.acls {
			if err := validFilter(r.filter); err != nil {
				t.Fatalf("accepted filter %q: %v", r.filter, err)
			}
			a.Allows(r.user, r.filter, r.write)
			a.Allows(r.user, "customer/prediction", false)
		}
	})
}
