package broker

import (
	"bufio"
	"bytes"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// The password hash format: pbkdf2-sha256$ITERATIONS$SALT$KEY, salt and key in
// unpadded standard base64. 600000 iterations is OWASP's 2023 advice for
// PBKDF2-HMAC-SHA256; the count is stored so it can rise without breaking
// existing files.
const (
	hashScheme     = "pbkdf2-sha256"
	hashIterations = 600_000
	maxIterations  = 10_000_000 // a hostile file must not make one connect cost minutes
	saltLen        = 16
	keyLen         = 32
)

// Auth holds the embedded broker's users and their per-topic rights, as read
// from BROKER_AUTH_FILE. A user may only do what an acl line grants it.
type Auth struct {
	users map[string]credential
	acls  []aclRule
	// dummy is checked when the user is unknown, so a refusal takes as long
	// for an unknown user as for a wrong password.
	dummy credential
}

type credential struct {
	iter int
	salt []byte
	key  []byte
}

type aclRule struct {
	user                string // "*": every user
	read, write, retain bool
	filter              string
}

// LoadAuthFile reads an auth file. Its lines are, blank lines and lines
// starting with # aside:
//
//	user NAME HASH                      HASH from HashPassword
//	acl NAME|* read|write|readwrite|retain FILTER   MQTT wildcards + and # allowed
//
// A user named in acl lines but not in user lines can only connect with a
// client certificate whose common name is NAME. Errors name file:line.
func LoadAuthFile(path string) (*Auth, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseAuth(path, data)
}

func parseAuth(name string, data []byte) (*Auth, error) {
	a := &Auth{users: map[string]credential{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := a.parseLine(strings.Fields(line)); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, n+1, err)
	}
	a.dummy = credential{iter: 1, salt: make([]byte, saltLen), key: make([]byte, keyLen)}
	for _, c := range a.users {
		a.dummy.iter = max(a.dummy.iter, c.iter)
	}
	return a, nil
}

func (a *Auth) parseLine(f []string) error {
	switch f[0] {
	case "user":
		if len(f) != 3 {
			return fmt.Errorf("want user NAME HASH, got %d fields", len(f))
		}
		if f[1] == "*" {
			return errors.New(`user "*" is reserved: in acl lines it means every user`)
		}
		if _, dup := a.users[f[1]]; dup {
			return fmt.Errorf("user %q appears twice", f[1])
		}
		c, err := parseHash(f[2])
		if err != nil {
			return fmt.Errorf("user %q: %w", f[1], err)
		}
		a.users[f[1]] = c
	case "acl":
		if len(f) != 4 {
			return fmt.Errorf("want acl NAME|* read|write|readwrite|retain TOPIC_FILTER, got %d fields", len(f))
		}
		r := aclRule{user: f[1], filter: f[3]}
		switch f[2] {
		case "read":
			r.read = true
		case "write":
			r.write = true
		case "readwrite":
			r.read, r.write = true, true
		case "retain":
			// Publishing retained messages on storeflow's own topics (focus,
			// prediction) needs this; elsewhere write is enough.
			r.write, r.retain = true, true
		default:
			return fmt.Errorf("access %q: want read, write, readwrite or retain", f[2])
		}
		if err := validFilter(r.filter); err != nil {
			return err
		}
		a.acls = append(a.acls, r)
	default:
		return fmt.Errorf("unknown directive %q: want user or acl", f[0])
	}
	return nil
}

// HashPassword returns the line's HASH for a user with password pw, with a
// fresh random salt (what `storeflow passwd` prints).
func HashPassword(pw string) (string, error) {
	return hashPassword(pw, hashIterations)
}

func hashPassword(pw string, iter int) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key, err := pbkdf2.Key(sha256.New, pw, salt, iter, keyLen)
	if err != nil {
		return "", err
	}
	enc := base64.RawStdEncoding
	return fmt.Sprintf("%s$%d$%s$%s", hashScheme, iter, enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

func parseHash(s string) (credential, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != hashScheme {
		return credential{}, fmt.Errorf("password hash: want %s$ITERATIONS$SALT$HASH (from storeflow passwd)", hashScheme)
	}
	iter, err := strconv.Atoi(parts[1])
	if err != nil || iter < 1 || iter > maxIterations {
		return credential{}, fmt.Errorf("password hash: iterations %q: want 1..%d", parts[1], maxIterations)
	}
	// Accept padded base64 too: hashes made by other tools often carry it.
	salt, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[2], "="))
	if err != nil || len(salt) == 0 {
		return credential{}, fmt.Errorf("password hash: salt is not base64")
	}
	key, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[3], "="))
	if err != nil || len(key) == 0 || len(key) > 64 {
		return credential{}, fmt.Errorf("password hash: hash is not base64 of 1..64 bytes")
	}
	return credential{iter: iter, salt: salt, key: key}, nil
}

func (c credential) matches(pw []byte) bool {
	got, err := pbkdf2.Key(sha256.New, string(pw), c.salt, c.iter, len(c.key))
	return err == nil && subtle.ConstantTimeCompare(got, c.key) == 1
}

// Authenticate reports whether password is user's.
func (a *Auth) Authenticate(user string, password []byte) bool {
	c, ok := a.users[user]
	if !ok {
		a.dummy.matches(password)
		return false
	}
	return c.matches(password)
}

// Allows reports whether user may publish to (write) or subscribe to and
// receive from (read) filter. A subscription filter is allowed only when
// every topic it matches is allowed, as in mosquitto 2.
func (a *Auth) Allows(user, filter string, write bool) bool {
	for _, r := range a.acls {
		if r.user != "*" && r.user != user {
			continue
		}
		if (write && r.write || !write && r.read) && filterWithin(filter, r.filter) {
			return true
		}
	}
	return false
}

// AllowsRetain reports whether user may publish retained messages to topic
// where retaining needs an explicit grant (storeflow's own topics).
func (a *Auth) AllowsRetain(user, topic string) bool {
	for _, r := range a.acls {
		if (r.user == "*" || r.user == user) && r.retain && filterWithin(topic, r.filter) {
			return true
		}
	}
	return false
}

// validFilter checks an MQTT topic filter: # only as the whole last level,
// + only as a whole level.
func validFilter(f string) error {
	if f == "" || strings.ContainsRune(f, 0) {
		return fmt.Errorf("topic filter %q: empty or contains NUL", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("topic filter %q: # must be the whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("topic filter %q: + must be a whole level", f)
		}
	}
	return nil
}

// filterWithin reports whether every topic sub matches is matched by acl. sub
// is a topic name (publish, delivery) or a subscription filter.
func filterWithin(sub, acl string) bool {
	s, a := strings.Split(sub, "/"), strings.Split(acl, "/")
	// Wildcards at the first level do not match $SYS and other $ topics.
	if strings.HasPrefix(sub, "$") && (a[0] == "+" || a[0] == "#") {
		return false
	}
	for i, al := range a {
		if al == "#" {
			return true // covers the parent level too: a/# matches a
		}
		if i >= len(s) {
			return false
		}
		switch {
		case s[i] == "#":
			return false
		case al == "+":
		case al != s[i] || s[i] == "+":
			return false
		}
	}
	return len(s) == len(a)
}

// peerCommonName is the verified client certificate's common name, or "".
func peerCommonName(cl *mqtt.Client) string {
	conn := cl.Net.Conn
	if g, ok := conn.(*gatedConn); ok {
		conn = g.Conn
	}
	c, ok := conn.(*tls.Conn)
	if !ok {
		return ""
	}
	st := c.ConnectionState()
	if !st.HandshakeComplete || len(st.VerifiedChains) == 0 || len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}
