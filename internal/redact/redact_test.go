package redact

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
)

func TestURL(t *testing.T) {
	tests := []struct{ name, raw, want string }{
		{"no credentials", "http://central:8000/api", "http://central:8000/api"},
		{"user and password", "http://user:s3cret@central:8000/api", "http://*****@central:8000/api"},
		{"token as user name", "https://ghp_token@model.example", "https://*****@model.example"},
		{"empty user", "redis://:s3cret@cache:6379/0", "redis://*****@cache:6379/0"},
		{"password with slash", "redis://:s3/cret@cache:6379/0", "redis://*****@cache:6379/0"},
		{"password with at", "tcp://u:p@ss@broker:1883", "tcp://*****@broker:1883"},
		{"password with question mark", "http://u:a?b@host/x", "http://*****@host/x"},
		{"password with hash", "http://u:a#b@host/x", "http://*****@host/x"},
		{"no scheme", "u:s3cret@broker:1883", "*****@broker:1883"},
		{"bare host", "broker.example", "broker.example"},
		{"query values", "http://host/v1?api_key=s3cret&debug=", "http://host/v1?api_key=*****&debug="},
		{"fragment", "http://host/#s3cret", "http://host/#*****"},
		{"redis options", "rediss://:s3cret@cache:6380/2?dial_timeout=1s", "rediss://*****@cache:6380/2?dial_timeout=*****"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := URL(tt.raw); got != tt.want {
				t.Errorf("URL(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}

func TestURLs(t *testing.T) {
	got := URLs("tcp://a:pw1@b1:1883, ssl://b2:8883,u:pw2@b3")
	if want := "tcp://*****@b1:1883, ssl://b2:8883,*****@b3"; got != want {
		t.Fatalf("URLs = %q, want %q", got, want)
	}
}

func TestText(t *testing.T) {
	tests := []struct {
		name, text string
		settings   []string
		want       string
	}{
		{"whole user info", `dial "tcp://user:pw%2Fx@host": refused`, []string{"tcp://user:pw%2Fx@host"},
			`dial "tcp://*****@host": refused`},
		{"password alone", "auth failed for pw%2Fx", []string{"tcp://user:pw%2Fx@host"}, "auth failed for *****"},
		{"decoded password", "auth failed for pw/x", []string{"tcp://user:pw%2Fx@host"}, "auth failed for *****"},
		{"user name kept when a password is set", "user user refused", []string{"http://user:pw@host"}, "user user refused"},
		{"token as user name", "bad token tok123", []string{"https://tok123@host"}, "bad token *****"},
		{"every entry of a list", "a1 and a2", []string{"tcp://u:a1@h1,tcp://u:a2@h2"}, "***** and *****"},
		{"several settings", "a1 and a2", []string{"tcp://u:a1@h1", "", "http://u:a2@h2"}, "***** and *****"},
		{"no credentials", "dial tcp 127.0.0.1:1: refused", []string{"tcp://127.0.0.1:1", "host"}, "dial tcp 127.0.0.1:1: refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Text(tt.text, tt.settings...); got != tt.want {
				t.Errorf("Text(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestError(t *testing.T) {
	if Error(nil, "http://u:pw@h") != nil {
		t.Fatal("Error(nil) is not nil")
	}
	plain := errors.New("connection refused")
	if got := Error(plain, "http://u:pw@h"); got != plain {
		t.Errorf("an error without credentials came back as %v, want it unchanged", got)
	}
	err := fmt.Errorf("open http://u:pw@h: %w", fs.ErrNotExist)
	got := Error(err, "http://u:pw@h")
	if strings.Contains(got.Error(), "pw") || !strings.Contains(got.Error(), "http://*****@h") {
		t.Errorf("Error = %q, want the credentials masked", got)
	}
	if !errors.Is(got, fs.ErrNotExist) {
		t.Errorf("errors.Is(%v, fs.ErrNotExist) = false, want the chain kept", got)
	}
}
